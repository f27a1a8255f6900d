"""Recommendation data: loaders for public logs, sample builders, collators and a user simulator.

The tensor batch every OneRec model consumes is specified once, in :mod:`kwaiformers.data.schema`.
"""
