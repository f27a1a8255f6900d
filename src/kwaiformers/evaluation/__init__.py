"""Scoring cores and the shared generation runner behind the ``eval/`` modules and ``kwaiformers eval``."""
