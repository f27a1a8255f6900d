"""Trainers (TRL / transformers subclasses), their configs, and all losses as pure functions.

Losses live in :mod:`kwaiformers.trainers.losses`.
"""
