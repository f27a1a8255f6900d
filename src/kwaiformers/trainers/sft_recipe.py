"""``kwaiformers train sft --config trainers/configs/klear_sft.yaml`` (long-CoT SFT recipe)."""

from __future__ import annotations

import argparse

from .recipes_reasoning import add_recipe_arguments, load_recipe_config, run_sft


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_recipe_arguments(parser)


def run(args: argparse.Namespace) -> int:
    run_sft(load_recipe_config(args.config), args)
    return 0
