"""One place that registers kwaiformers' configs, models and processors with the transformers Auto classes.

Every model folder adds one :class:`AutoRegistration` entry to :data:`AUTO_REGISTRATIONS`.

Registration is *deferred* so that ``import kwaiformers`` stays cheap (no torch import): at import
time :func:`install_lazy_registration` registers immediately if transformers' Auto modules are
already loaded, and otherwise installs an import hook that registers right after
``transformers.models.auto.configuration_auto`` (configs) and
``transformers.models.auto.modeling_auto`` / ``processing_auto`` (models, processors) finish
loading. ``kwaiformers.register_auto_classes()`` forces full registration at any time; it is
idempotent.

Precedence when transformers itself ships a model type we also register (for example a future
native ``keye``): **transformers' built-in class wins** and ours is skipped with a one-time
warning, unless the environment variable ``KWAIFORMERS_OVERRIDE_NATIVE=1`` is set, in which case
ours replaces it (``exist_ok=True``). Import never crashes because of a clash. (Keye-VL: a
future native ``keye`` type is lower-case, so the checkpoints' ``"Keye"``/``"KeyeVL1_5"`` strings stay
ours; if transformers ever claims them, its classes win unless the variable is set.)

Robustness: registration only runs when the import system is *quiescent* for transformers: no
``transformers.*`` and no ``kwaiformers.*`` module is half-executed (a registered model module
may import any kwaiformers module, e.g. ``modeling_onerec`` imports ``modeling_moe``). When a trigger fires
in the middle of a larger import (``import trl`` pulls in ``transformers.trainer``, which pulls in
the Auto modules), the work is marked pending and retried after the next ``transformers`` /
``transformers.*`` / ``kwaiformers.*`` module finishes executing, so the outermost import completes
first and our model modules never hit a circular import. Each entry registers independently, and
an Auto class whose optional backend is missing (``AutoVideoProcessor`` without torchvision) is
skipped with a debug log.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import threading
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutoRegistration:
    """What to register for one ``model_type``.

    Attributes:
        model_type: the ``config.json`` ``model_type`` string (several entries may share classes,
            e.g. a hub checkpoint's own model_type string next to ours).
        config: ``"module:ClassName"`` of the ``PretrainedConfig`` subclass.
        models: mapping from a transformers Auto class name (``"AutoModel"``,
            ``"AutoModelForCausalLM"``, ``"AutoModelForImageTextToText"``, ...) to
            ``"module:ClassName"``.
        processor: optional ``"module:ClassName"`` for ``AutoProcessor``.
        extra: other Auto classes (``"AutoImageProcessor"``, ``"AutoVideoProcessor"``) ->
            ``"module:ClassName"``.
    """

    model_type: str
    config: str
    models: dict[str, str] = field(default_factory=dict)
    processor: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


#: The registry. Model issues append entries here, nowhere else.
AUTO_REGISTRATIONS: list[AutoRegistration] = [
    AutoRegistration(
        model_type="onerec_pscore",
        config="kwaiformers.rewards.configuration_pscore:PScoreConfig",
        models={"AutoModel": "kwaiformers.rewards.modeling_pscore:PScoreModel"},
    ),
    AutoRegistration(
        model_type="onerec",
        config="kwaiformers.models.onerec.configuration_onerec:OneRecConfig",
        models={"AutoModel": "kwaiformers.models.onerec.modeling_onerec:OneRecForGenerativeRecommendation"},
    ),
    AutoRegistration(
        model_type="onerec_v2",
        config="kwaiformers.models.onerec_v2.configuration_onerec_v2:OneRecV2Config",
        models={
            "AutoModel": "kwaiformers.models.onerec_v2.modeling_onerec_v2:OneRecV2ForGenerativeRecommendation"
        },
    ),
    # Keye-VL: our type plus the hub checkpoints' own model_type strings. AutoModel returns the
    # generate-capable class because the hub README calls AutoModel(...).generate().
    AutoRegistration(
        model_type="keye_vl",
        config="kwaiformers.models.keye_vl.configuration_keye_vl:KeyeVLConfig",
        models={
            "AutoModel": "kwaiformers.models.keye_vl.modeling_keye_vl:KeyeVLForConditionalGeneration",
            "AutoModelForImageTextToText": "kwaiformers.models.keye_vl.modeling_keye_vl:KeyeVLForConditionalGeneration",
            "AutoModelForCausalLM": "kwaiformers.models.keye_vl.modeling_keye_vl:KeyeVLForConditionalGeneration",
        },
        processor="kwaiformers.models.keye_vl.processing_keye_vl:KeyeVLProcessor",
        extra={
            "AutoImageProcessor": "kwaiformers.models.keye_vl.image_processing_keye_vl:KeyeVLImageProcessor",
            "AutoVideoProcessor": "kwaiformers.models.keye_vl.video_processing_keye_vl:KeyeVLVideoProcessor",
        },
    ),
    AutoRegistration(
        model_type="Keye",
        config="kwaiformers.models.keye_vl.configuration_keye_vl:KeyeConfig",
        models={
            "AutoModel": "kwaiformers.models.keye_vl.modeling_keye_vl:KeyeForConditionalGeneration",
            "AutoModelForImageTextToText": "kwaiformers.models.keye_vl.modeling_keye_vl:KeyeForConditionalGeneration",
            "AutoModelForCausalLM": "kwaiformers.models.keye_vl.modeling_keye_vl:KeyeForConditionalGeneration",
        },
        processor="kwaiformers.models.keye_vl.processing_keye_vl:KeyeProcessor",
        extra={
            "AutoImageProcessor": "kwaiformers.models.keye_vl.image_processing_keye_vl:KeyeVLImageProcessor",
            "AutoVideoProcessor": "kwaiformers.models.keye_vl.video_processing_keye_vl:KeyeVLVideoProcessor",
        },
    ),
    AutoRegistration(
        model_type="KeyeVL1_5",
        config="kwaiformers.models.keye_vl.configuration_keye_vl:KeyeVL1_5Config",
        models={
            "AutoModel": "kwaiformers.models.keye_vl.modeling_keye_vl:KeyeVL1_5ForConditionalGeneration",
            "AutoModelForImageTextToText": "kwaiformers.models.keye_vl.modeling_keye_vl:KeyeVL1_5ForConditionalGeneration",
            "AutoModelForCausalLM": "kwaiformers.models.keye_vl.modeling_keye_vl:KeyeVL1_5ForConditionalGeneration",
        },
        processor="kwaiformers.models.keye_vl.processing_keye_vl:KeyeVL1_5Processor",
        extra={
            "AutoImageProcessor": "kwaiformers.models.keye_vl.image_processing_keye_vl:KeyeVLImageProcessor",
            "AutoVideoProcessor": "kwaiformers.models.keye_vl.video_processing_keye_vl:KeyeVL1_5VideoProcessor",
        },
    ),
]

_lock = threading.RLock()
_done: set[tuple[str, str]] = set()
_warned: set[str] = set()
_pending = False  # a trigger fired while transformers was mid-import: retry when quiescent
_running = False  # re-entrancy guard (registering imports modules, which fire the hook again)

_TRANSFORMERS = "transformers"
_CONFIG_MODULE = "transformers.models.auto.configuration_auto"
_MODEL_MODULES = (
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.processing_auto",
    "transformers.models.auto.image_processing_auto",
    "transformers.models.auto.video_processing_auto",
)


def _load(path: str):
    module_name, _, attr = path.partition(":")
    if not attr:
        raise ValueError(f"registration path must look like 'module:ClassName', got {path!r}")
    return getattr(importlib.import_module(module_name), attr)


def _override_native() -> bool:
    return os.environ.get("KWAIFORMERS_OVERRIDE_NATIVE", "0").lower() in {"1", "true", "yes"}


def _register_config(entry: AutoRegistration) -> None:
    key = ("config", entry.model_type)
    if key in _done:
        return
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if entry.model_type in CONFIG_MAPPING_NAMES and not _override_native():
        if entry.model_type not in _warned:
            _warned.add(entry.model_type)
            logger.warning(
                "transformers ships its own model_type %r; keeping transformers' class "
                "(set KWAIFORMERS_OVERRIDE_NATIVE=1 to use kwaiformers' instead).",
                entry.model_type,
            )
        _done.add(key)
        return
    config_cls = _load(entry.config)
    AutoConfig.register(entry.model_type, config_cls, exist_ok=True)
    _done.add(key)


def _register_models(entry: AutoRegistration) -> None:
    key = ("models", entry.model_type)
    if key in _done:
        return
    _register_config(entry)
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_cls = CONFIG_MAPPING[entry.model_type]
    if config_cls is not _load(entry.config):  # transformers' native class kept (docstring)
        _done.add(key)
        return
    import transformers

    for auto_name, path in {**entry.models, **entry.extra}.items():
        try:
            getattr(transformers, auto_name).register(config_cls, _load(path), exist_ok=True)
        except ImportError as exc:  # optional backend missing (AutoVideoProcessor w/o torchvision)
            if _busy():
                raise
            logger.debug("skipping %s registration for %r: %s", auto_name, entry.model_type, exc)
    if entry.processor is not None:
        transformers.AutoProcessor.register(config_cls, _load(entry.processor), exist_ok=True)
    _done.add(key)


def _initializing(module_name: str) -> bool:
    module = sys.modules.get(module_name)
    spec = getattr(module, "__spec__", None)
    return module is not None and bool(getattr(spec, "_initializing", False))


def _entry_modules(entry: AutoRegistration) -> set[str]:
    paths = [entry.config, *entry.models.values(), *entry.extra.values()]
    if entry.processor is not None:
        paths.append(entry.processor)
    return {p.partition(":")[0] for p in paths}


def _registry_modules() -> set[str]:
    return set().union(*(_entry_modules(e) for e in AUTO_REGISTRATIONS))


def _watched(name: str) -> bool:
    """Modules whose end of execution may make registration due or possible: transformers, every
    kwaiformers submodule (a registered model module may import any of them) and the modules of
    entries registered from outside kwaiformers."""
    return (name == _TRANSFORMERS or name.startswith(("transformers.", "kwaiformers."))
            or name in _registry_modules())


def _busy() -> bool:
    """Whether a transformers or kwaiformers module (other than the top-level ``kwaiformers``
    package, which calls us at the end of its own execution) is still executing.

    Modules loaded through our import hook are tracked exactly in ``_executing`` (their importlib
    ``_initializing`` flag is still set right after they finish, when the hook runs); the others
    are checked through that flag.
    """
    if _executing:
        return True
    return any(_initializing(name) for name in list(sys.modules)
               if _watched(name) and name not in _hooked)


def _level() -> bool | None:
    """``False``: full registration is due; ``True``: configs only; ``None``: nothing yet."""
    if any(name in sys.modules for name in _MODEL_MODULES):
        return False
    if _CONFIG_MODULE in sys.modules:
        return True
    return None


def register_auto_classes(configs_only: bool = False) -> bool:
    """Register every entry of :data:`AUTO_REGISTRATIONS` with the transformers Auto classes.

    Idempotent; each entry registers independently and a failing entry is reported (warning) without
    stopping the others.

    Args:
        configs_only: register only ``AutoConfig`` (cheaper: no model module is imported).

    Returns:
        ``True`` when every entry is registered, ``False`` when some were deferred or failed.
    """
    global _running, _pending
    with _lock:
        if _running:
            return False
        _running = True
        complete = True
        try:
            for entry in AUTO_REGISTRATIONS:
                try:
                    _register_config(entry) if configs_only else _register_models(entry)
                except Exception as exc:
                    complete = False
                    if _busy():  # a circular import after all: retry when quiescent
                        _pending = True
                        logger.debug("deferring registration of %r: %r", entry.model_type, exc)
                    else:
                        logger.warning(
                            "kwaiformers could not register model_type %r with the transformers "
                            "Auto classes: %r",
                            entry.model_type,
                            exc,
                        )
        finally:
            _running = False
        return complete


_executing: list[str] = []  # watched modules currently executing (innermost last)
_hooked: set[str] = set()  # modules whose execution went through our import hook
_complete = False  # everything registered: the import hook goes inert


def _maybe_register() -> None:
    """Register what is due if no transformers/registered module is mid-import, else mark pending."""
    global _pending, _complete
    if _complete:
        return
    if _running:  # a module imported *by* the running registration finished: re-check afterwards
        _pending = True
        return
    for _ in range(4):  # a configs-only pass may itself import the model Auto modules: go again
        level = _level()
        if level is None:
            return
        if _busy():
            _pending = True
            return
        _pending = False
        if register_auto_classes(configs_only=level) and level is False:
            _complete = True
            return
        if _level() is level and not _pending:
            return


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Re-checks registration each time a transformers or registered module finishes executing.

    Inert once everything is registered, so it costs nothing afterwards.
    """

    def find_spec(self, fullname, path, target=None):  # noqa: D401
        if _complete:
            return None
        if not _watched(fullname):
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original_exec = spec.loader.exec_module

        def exec_module(module, _orig=original_exec, _name=fullname):
            _hooked.add(_name)
            _executing.append(_name)
            try:
                _orig(module)
            finally:
                _executing.pop()
            try:
                _maybe_register()
            except Exception as exc:  # never break the user's import
                logger.warning("kwaiformers Auto-class registration failed: %r", exc)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_finder = _PostImportFinder()


def install_lazy_registration() -> None:
    """Register now for what transformers has loaded; hook the rest (called by ``import kwaiformers``)."""
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    try:
        _maybe_register()
    except Exception as exc:  # pragma: no cover - defensive
        logger.warning("kwaiformers Auto-class registration failed: %r", exc)
