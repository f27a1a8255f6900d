"""Reward functions and reward models (usable by any TRL trainer where they are text rewards)."""
