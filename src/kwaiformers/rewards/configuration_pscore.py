"""Configuration of the P-Score multi-tower reward model (OneRec Technical Report §2.4.1)."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PretrainedConfig

#: Default objectives: one tower each. ``long_view`` / ``complete`` are derived from play time and
#: duration when the batch carries no label for them (see :func:`pscore_labels_from_batch`).
DEFAULT_OBJECTIVES: tuple[str, ...] = ("is_click", "long_view", "is_like", "is_follow", "is_hate")


class PScoreConfig(PretrainedConfig):
    """Multi-tower preference reward model ("P-Score") over the OneRec batch schema.

    Args:
        num_levels: semantic-ID levels ``L``.
        codebook_size: codes per level ``K`` (an int, or one size per level).
        user_feature_vocab_sizes: vocabulary size of each categorical ``user_static`` column.
        num_continuous_features: ``F_c`` of ``*_feats`` (``len(CONTINUOUS_FEATURES)``).
        num_feedback_labels: ``F_b`` of ``*_labels`` (``len(FEEDBACK_LABELS)``).
        hidden_size: width of the item/user representations.
        tower_hidden_size: width of each objective tower's hidden state.
        objectives: one tower per objective (``is_*`` names of ``FEEDBACK_LABELS``, ``long_view``,
            ``complete``).
        objective_weights: ``w^{xtr}`` of the P-Score loss, one per objective (the report tunes
            them and gives no values; default all 1).
        negative_objectives: objectives that are *bad* for the user (``is_hate``); the combined
            P-Score is trained towards ``1 - y`` on them, so a high P-Score means "preferred".
        tower_loss_weight: weight of the per-tower auxiliary BCE losses.
        long_view_seconds: play time that counts as a long view when ``long_view`` is derived
            (KuaiRand's definition is a long play relative to duration; default: 18 s or the
            whole video if shorter).
    """

    model_type = "onerec_pscore"

    def __init__(
        self,
        num_levels: int = 3,
        codebook_size: int | Sequence[int] = 256,
        user_feature_vocab_sizes: Sequence[int] = (),
        num_continuous_features: int = 4,
        num_feedback_labels: int = 7,
        hidden_size: int = 64,
        tower_hidden_size: int = 32,
        objectives: Sequence[str] = DEFAULT_OBJECTIVES,
        objective_weights: Sequence[float] | None = None,
        negative_objectives: Sequence[str] = ("is_hate",),
        tower_loss_weight: float = 1.0,
        long_view_seconds: float = 18.0,
        **kwargs,
    ):
        objectives = list(objectives)
        if not objectives:
            raise ValueError("PScoreConfig.objectives must name at least one objective")
        if objective_weights is None:
            objective_weights = [1.0] * len(objectives)
        if len(objective_weights) != len(objectives):
            raise ValueError(
                f"PScoreConfig.objective_weights has {len(objective_weights)} entries, expected one "
                f"per objective ({len(objectives)})"
            )
        unknown = [o for o in negative_objectives if o not in objectives]
        if unknown:
            raise ValueError(f"negative_objectives {unknown} are not in objectives {objectives}")
        sizes = [int(codebook_size)] * int(num_levels) if isinstance(codebook_size, int) else [
            int(k) for k in codebook_size
        ]
        if num_levels < 1 or len(sizes) != num_levels or min(sizes) < 1:
            raise ValueError(
                f"PScoreConfig needs num_levels >= 1 and codebook_size an int >= 1 or {num_levels} "
                f"sizes >= 1, got num_levels={num_levels}, codebook_size={codebook_size}"
            )
        self.num_levels = int(num_levels)
        self.codebook_size = codebook_size if isinstance(codebook_size, int) else sizes

        self.user_feature_vocab_sizes = [int(v) for v in user_feature_vocab_sizes]
        self.num_continuous_features = int(num_continuous_features)
        self.num_feedback_labels = int(num_feedback_labels)
        self.hidden_size = int(hidden_size)
        self.tower_hidden_size = int(tower_hidden_size)
        self.objectives = objectives
        self.objective_weights = [float(w) for w in objective_weights]
        self.negative_objectives = list(negative_objectives)
        self.tower_loss_weight = float(tower_loss_weight)
        self.long_view_seconds = float(long_view_seconds)
        super().__init__(**kwargs)

    @property
    def level_sizes(self) -> list[int]:
        """Codes per level."""
        k = self.codebook_size
        return [int(k)] * self.num_levels if isinstance(k, int) else [int(v) for v in k]
