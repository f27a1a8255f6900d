"""Lazy public names for packages: ``import kwaiformers.x`` stays cheap, names load on first use."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build a module-level ``__getattr__`` / ``__dir__`` pair (PEP 562) for ``package``.

    Args:
        package: the package's ``__name__``.
        names: public name -> module defining it, either absolute (``"kwaiformers.data.samples"``)
            or a submodule of ``package`` (``"samples"``).
        namespace: the package's ``globals()``; resolved names are cached there.

    Returns:
        ``(__getattr__, __dir__)`` to assign at module level.
    """

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if not module.startswith("kwaiformers"):
            module = f"{package}.{module}"
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
