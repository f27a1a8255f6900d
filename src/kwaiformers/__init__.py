"""kwaiformers: Kuaishou's OneRec, Klear-Reasoner (GPPO), Keye-VL and E-Tree in the Hugging Face ecosystem.

Importing the package is cheap: public names resolve lazily on first attribute access (see
``_LAZY_ATTRS``), and the transformers Auto-class registration is deferred until transformers' own
Auto modules are imported (see :mod:`kwaiformers._registration`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._registration import install_lazy_registration, register_auto_classes
from .utils.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it. Later issues add their names here (one line each).
_LAZY_ATTRS: dict[str, str] = {
    "collect_env": "kwaiformers.utils.env",
    "GPPOConfig": "kwaiformers.trainers.gppo_config",
    "GPPOTrainer": "kwaiformers.trainers.gppo_trainer",
    "gppo_per_token_loss": "kwaiformers.trainers.losses",
    "KlearMathReward": "kwaiformers.rewards.math_reward",
    "KlearCodeReward": "kwaiformers.rewards.code_reward",
    "Sandbox": "kwaiformers.sandbox.executor",
    "SandboxConfig": "kwaiformers.sandbox.executor",
    "run_tests": "kwaiformers.evaluation.livecodebench",
    "evaluate_task": "kwaiformers.evaluation.runner",
    "TaskAdapter": "kwaiformers.evaluation.runner",
    "load_kc_mmbench": "kwaiformers.evaluation.kc_mmbench",
    "score_kc_mmbench": "kwaiformers.evaluation.kc_mmbench",
    "KCMMBenchTask": "kwaiformers.evaluation.kc_mmbench",
    "MultipleChoiceTask": "kwaiformers.evaluation.mm_mcq",
    "OneRecConfig": "kwaiformers.models.onerec.configuration_onerec",
    "OneRecForGenerativeRecommendation": "kwaiformers.models.onerec.modeling_onerec",
    "OneRecV2Config": "kwaiformers.models.onerec_v2.configuration_onerec_v2",
    "OneRecV2ForGenerativeRecommendation": "kwaiformers.models.onerec_v2.modeling_onerec_v2",
    "AuxFreeBiasUpdateCallback": "kwaiformers.models.onerec.modeling_moe",
    "SemanticIdTokenizer": "kwaiformers.models.onerec.semantic_ids",
    "SemanticIdIndex": "kwaiformers.models.onerec.semantic_ids",
    "UserSimulator": "kwaiformers.data.simulator",
    "OneRecSampleBuilder": "kwaiformers.data.samples",
    "OneRecCollator": "kwaiformers.data.collator",
    "load_kuairand": "kwaiformers.data.loaders",
    "load_kuairec": "kwaiformers.data.loaders",
    "load_movielens": "kwaiformers.data.loaders",
    "text_embeddings": "kwaiformers.data.embeddings",
    "collaborative_embeddings": "kwaiformers.data.embeddings",
    "duration_aware_advantages": "kwaiformers.rewards.dars",
    "DARSConfig": "kwaiformers.rewards.dars",
    "PScoreConfig": "kwaiformers.rewards.configuration_pscore",
    "PScoreModel": "kwaiformers.rewards.modeling_pscore",
    "ECPOConfig": "kwaiformers.trainers.ecpo_config",
    "ECPOTrainer": "kwaiformers.trainers.ecpo_trainer",
    "GBPOConfig": "kwaiformers.trainers.gbpo_config",
    "GBPOTrainer": "kwaiformers.trainers.gbpo_trainer",
    "TreeSpec": "kwaiformers.federated.tree",
    "kma": "kwaiformers.federated.kma",
    "ETreeAverager": "kwaiformers.federated.averagers",
    "GossipAverager": "kwaiformers.federated.averagers",
    "FedAvgAverager": "kwaiformers.federated.averagers",
    "ETreeCallback": "kwaiformers.federated.callbacks",
    "KeyeVLConfig": "kwaiformers.models.keye_vl.configuration_keye_vl",
    "KeyeVLForConditionalGeneration": "kwaiformers.models.keye_vl.modeling_keye_vl",
    "KeyeVLModel": "kwaiformers.models.keye_vl.modeling_keye_vl",
    "KeyeVLProcessor": "kwaiformers.models.keye_vl.processing_keye_vl",
    "keye_lora_config": "kwaiformers.models.keye_vl.peft_keye_vl",
}

__all__ = ["__version__", "register_auto_classes", *_LAZY_ATTRS]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY_ATTRS, globals())


if TYPE_CHECKING:  # pragma: no cover
    from .utils.env import collect_env  # noqa: F401

install_lazy_registration()
