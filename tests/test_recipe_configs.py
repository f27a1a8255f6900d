"""Every shipped recipe's ``training`` section uses only arguments the pinned trainer configs accept.

A key that transformers/TRL renamed or removed (e.g. ``warmup_ratio`` in transformers 5) would only
fail when a user launches the paper-size recipe, so the check runs on every YAML in trainers/configs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "trainers" / "configs").glob("*.yaml"))


def _accepted_training_keys() -> set[str]:
    from transformers import TrainingArguments
    from trl import SFTConfig

    from kwaiformers.trainers import ecpo_config, gbpo_config
    from kwaiformers.trainers.gppo_config import GPPOConfig

    classes = [TrainingArguments, SFTConfig, GPPOConfig]
    for module in (ecpo_config, gbpo_config):
        classes += [v for v in vars(module).values() if isinstance(v, type) and dataclasses.is_dataclass(v)]
    return {f.name for cls in classes for f in dataclasses.fields(cls)}


def test_configs_exist():
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_training_section_keys_are_accepted(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    training = raw.get("training") or {}
    assert isinstance(training, dict), f"{path.name}: training must be a mapping"
    unknown = set(training) - _accepted_training_keys()
    assert not unknown, f"{path.name}: training keys not accepted by the trainer configs: {sorted(unknown)}"
