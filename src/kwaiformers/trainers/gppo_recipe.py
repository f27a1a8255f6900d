"""``kwaiformers train gppo --config trainers/configs/klear_gppo_math.yaml`` (GPPO RL recipe)."""

from __future__ import annotations

import argparse

from .recipes_reasoning import add_recipe_arguments, load_recipe_config, run_gppo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)


def run(args: argparse.Namespace) -> int:
    run_gppo(load_recipe_config(args.config), args)
    return 0
