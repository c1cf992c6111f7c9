"""What the add-on needs beyond Blender's standard library, and which feature needs it.

The add-on enables on any Blender (a distribution's ``blender`` may ship without numpy): modules that
need numpy are imported only when a feature runs, and the panel lists what is missing for what.
"""

from __future__ import annotations

import functools
import importlib.util

from .reporting import UserError

#: Optional module -> the features that need it (shown in the panel when it is missing).
NEEDED_BY = {
    "numpy": "importing scenes, Generate, camera path export/import",
}


@functools.lru_cache(maxsize=1)
def missing() -> dict[str, str]:
    """{module: features} for every optional module this Blender's Python lacks."""
    return {name: features for name, features in NEEDED_BY.items() if not importable(name)}


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, feature: str) -> None:
    """Raise a clear :class:`MissingDependency` if ``module`` is not importable (before ``feature`` runs)."""
    if not importable(module):
        raise MissingDependency(module, feature)


class MissingDependency(UserError):
    def __init__(self, module: str, feature: str):
        super().__init__(f"{feature} needs the Python module '{module}', which this Blender does not ship. "
                         f"Install it for Blender's Python (e.g. Debian: apt install python3-{module}) "
                         "or use the blender.org build", code="missing_dependency")
