"""Executor for untrusted (model-generated) code."""
