"""PEFT LoRA targets for Keye-VL.

The vision tower also has ``self_attn.q_proj`` / ``k_proj`` / ``v_proj`` modules, so plain name lists
(``["q_proj", "v_proj", ...]``) would adapt the SigLIP encoder too. The targets here are regexes over
the full module names (PEFT ``re.fullmatch``):

- language model attention + MLP: ``model.layers.N.self_attn.{q,k,v,o}_proj`` and
  ``model.layers.N.mlp.{gate,up,down}_proj`` (:data:`KEYE_LLM_LORA_REGEX`);
- optionally the ``mlp_AR`` projector: ``mlp_AR.linear_1`` / ``mlp_AR.linear_2``;
- optionally the vision encoder's attention/MLP.
"""

from __future__ import annotations

__all__ = ["KEYE_LLM_LORA_REGEX", "KEYE_PROJECTOR_LORA_REGEX", "KEYE_VISION_LORA_REGEX",
           "keye_lora_config", "keye_lora_target_modules"]

KEYE_LLM_LORA_REGEX = r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
KEYE_PROJECTOR_LORA_REGEX = r"mlp_AR\.linear_(1|2)"
KEYE_VISION_LORA_REGEX = (
    r"visual\.vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc(1|2))"
)


def keye_lora_target_modules(include_projector: bool = False, include_vision: bool = False) -> str:
    """One PEFT ``target_modules`` regex: the LLM, plus the projector / vision tower on request."""
    parts = [KEYE_LLM_LORA_REGEX]
    if include_projector:
        parts.append(KEYE_PROJECTOR_LORA_REGEX)
    if include_vision:
        parts.append(KEYE_VISION_LORA_REGEX)
    return parts[0] if len(parts) == 1 else "(" + "|".join(f"({p})" for p in parts) + ")"


def keye_lora_config(
    r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    include_projector: bool = False,
    include_vision: bool = False,
    **kwargs,
):
    """A ``peft.LoraConfig`` (``task_type="CAUSAL_LM"``) on Keye-VL's documented target modules."""
    from peft import LoraConfig

    if r <= 0:
        raise ValueError(f"r must be a positive integer, got {r}")
    return LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=keye_lora_target_modules(include_projector, include_vision),
        task_type="CAUSAL_LM",
        **kwargs,
    )
