"""All training losses as pure functions (tensors in, per-sample or per-token losses out).

Each function validates its inputs, documents its shapes, cites the paper equation it implements,
and is unit-tested alone against an independent re-derivation in ``tests/``. Trainers import from
here; nothing else defines a loss.
"""

from __future__ import annotations

import torch

__all__: list[str] = []


def _check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise ``TypeError``/``ValueError`` unless every argument is a tensor of one common shape."""
    shape = None
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if shape is None:
            shape = value.shape
        elif value.shape != shape:
            raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)}")
