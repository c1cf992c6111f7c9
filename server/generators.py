"""Which generators and depth backends this engine offers, and loading them (in the worker only).

``draft`` needs no weights. ``wan`` is available once ``ex4d_engine.generation.wan`` exposes
``load_generator(models_dir, profile)``; if it also exposes ``models_status(models_dir)``
(-> ``{"present": [...], "missing": [...]}``) health reports the weights present/missing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ex4d_engine.errors import ResourceError

GENERATOR_NAMES = ("draft", "wan")


@dataclass(frozen=True)
class GeneratorStatus:
    name: str
    available: bool
    reason: Optional[str] = None
    models_present: list[str] = field(default_factory=list)
    models_missing: list[str] = field(default_factory=list)


def generator_status(name: str, models_dir: Optional[Path]) -> GeneratorStatus:
    """Cheap check (no weights are read): can ``name`` be loaded here?"""
    if name == "draft":
        try:
            importlib.import_module("ex4d_engine.generation.draft")
        except ImportError as exc:
            return GeneratorStatus(name, False, f"the draft generator cannot be imported: {exc}")
        return GeneratorStatus(name, True)
    if name == "wan":
        return _wan_status(models_dir)
    return GeneratorStatus(name, False, f"unknown generator {name!r}; available: {', '.join(GENERATOR_NAMES)}")


def _wan_status(models_dir: Optional[Path]) -> GeneratorStatus:
    try:
        wan = importlib.import_module("ex4d_engine.generation.wan")
    except ImportError as exc:
        return GeneratorStatus("wan", False, f"the Wan generator cannot be imported: {exc}")
    if not hasattr(wan, "load_generator"):
        return GeneratorStatus("wan", False, "the Wan2.1 + EX-4D generator is not part of this build yet")
    present: list[str] = []
    missing: list[str] = []
    status_fn = getattr(wan, "models_status", None)
    if status_fn is not None:
        try:
            status = status_fn(str(models_dir) if models_dir else None)
            present, missing = list(status.get("present", [])), list(status.get("missing", []))
        except Exception as exc:  # a broken models dir must not break health
            return GeneratorStatus("wan", False, f"cannot check the Wan weights: {exc}")
    if missing:
        return GeneratorStatus("wan", False, f"Wan weights missing: {', '.join(missing)} (models dir: --models-dir)",
                               present, missing)
    return GeneratorStatus("wan", True, None, present, missing)


def load_generator(name: str, models_dir: Optional[Path], profile: Optional[str], group_size: int = 1,
                   speed: Optional[str] = None) -> Any:
    """Build a resident generator. Raises ResourceError with the reason when it is not available.

    ``group_size`` > 1: the worker owns that many GPUs; Wan runs as a sequence-parallel torchrun gang
    over them (:mod:`ex4d_engine.generation.wan.parallel`). The draft generator needs no group.
    """
    status = generator_status(name, models_dir)
    if not status.available:
        raise ResourceError(f"generator {name!r} is not available: {status.reason}")
    if name == "draft":
        from ex4d_engine.generation.draft import DraftGenerator

        return DraftGenerator()
    if group_size > 1:
        from ex4d_engine.generation.wan.parallel import GangGenerator, GangSpec

        return GangGenerator(GangSpec(size=group_size, generator="wan",
                                      models_dir=str(models_dir) if models_dir else None, profile=profile))
    from ex4d_engine.generation import wan

    return wan.load_generator(str(models_dir) if models_dir else None, profile, speed=speed)


def depth_backends() -> list[str]:
    try:
        from ex4d_engine.depth import available_backends

        return list(available_backends())
    except ImportError:
        return ["file"]
