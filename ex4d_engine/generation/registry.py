"""The generator registry: every way of building a generator goes through here.

The generators themselves are declared once, in :data:`ex4d_engine.protocol.GENERATORS` (name,
label, loader, weights check). The CLI (``ex4d generate / run / demo``), the server's workers and
the multi-GPU gang's ranks all call :func:`load_generator`; health and ``ex4d models`` call
:func:`generator_status`. Adding a generator = one ``GeneratorSpec`` line plus its loader function.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import InputError, ResourceError
from ..protocol import GENERATORS, GeneratorSpec


#: Runs any registered generator as a torchrun gang over a GPU group: ``f(name, size, models_dir, profile)``.
GANG_RUNNER = "ex4d_engine.generation.wan.parallel:start_gang"


@dataclass(frozen=True)
class GeneratorStatus:
    """Whether a generator can run here, checked without reading any weights."""

    name: str
    available: bool
    reason: Optional[str] = None
    models_present: list[str] = field(default_factory=list)
    models_missing: list[str] = field(default_factory=list)


def spec_of(name: str) -> GeneratorSpec:
    try:
        return GENERATORS[name]
    except KeyError:
        raise InputError(f"unknown generator {name!r}; available: {', '.join(GENERATORS)}", "generator") from None


def generator_status(name: str, models_dir: Optional[str] = None) -> GeneratorStatus:
    """Can ``name`` be loaded here? Imports its package and lists its weights; loads nothing."""
    spec = spec_of(name)
    try:
        _resolve(spec.loader)
    except ImportError as exc:
        return GeneratorStatus(name, False, f"the {spec.label} generator cannot be imported: {exc}")
    if spec.weights_status is None:
        return GeneratorStatus(name, True)
    try:
        status = _resolve(spec.weights_status)(str(models_dir) if models_dir else None)
    except Exception as exc:  # noqa: BLE001 - a broken models dir must not break health
        return GeneratorStatus(name, False, f"cannot check the {spec.label} weights: {exc}")
    present, missing = list(status.get("present", [])), list(status.get("missing", []))
    if missing:
        get = "; ".join(status.get("get", [])) or "see `ex4d models`"
        return GeneratorStatus(name, False, f"weights missing: {', '.join(missing)} (get them: {get})",
                               present, missing)
    return GeneratorStatus(name, True, None, present, missing)


def all_statuses(models_dir: Optional[str] = None) -> list[GeneratorStatus]:
    return [generator_status(name, models_dir) for name in GENERATORS]


def load_generator(name: str, models_dir: Optional[str] = None, profile: Optional[str] = None,
                   group_size: int = 1, **options: Any):
    """Build the resident generator ``name``.

    Args:
        models_dir: where the weights live (None: the loader's default, e.g. ``$EX4D_MODELS_DIR``).
        profile: VRAM profile (None: the generator's default).
        group_size: GPUs the caller owns; > 1 runs the generator as a torchrun gang over them
            (:mod:`ex4d_engine.generation.wan.parallel`).
        options: passed to the loader as keywords (``device``, ``settings``, ...).

    Raises:
        InputError for an unknown name; ResourceError (with the reason) when it cannot run here.
    """
    spec = spec_of(name)
    status = generator_status(name, models_dir)
    if not status.available:
        raise ResourceError(f"generator {name!r} is not available: {status.reason}")
    if group_size > 1:  # the gang's ranks come back here for their own generator
        gang = _resolve(GANG_RUNNER)  # (the gang runs the generator's default speed preset)
        return gang(name=name, size=group_size, models_dir=str(models_dir) if models_dir else None, profile=profile)
    return _resolve(spec.loader)(str(models_dir) if models_dir else None, profile, **options)


def _resolve(target: str) -> Callable[..., Any]:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
