"""Make ``import torchvision`` work next to a CPU-only torch.

PyPI's torchvision wheel is a CUDA build; against a CPU-only torch its ``_C`` library fails to load
and ``import torchvision`` then dies on ``register_fake("torchvision::nms")`` ("operator
torchvision::nms does not exist"). transformers (depth models) and diffsynth (Wan) import
torchvision, so both call :func:`apply_torchvision_shim` first. Defining the two op schemas is
enough: nothing in ex4d calls those ops. Where the compiled ops load (a matching CUDA install),
this does nothing.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

#: Op schemas torchvision's Python code registers fakes for at import (``_meta_registrations``).
_TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_shim_library = None


def apply_torchvision_shim() -> bool:
    """Define torchvision's nms/qnms schemas if its compiled ops cannot load; True if it was needed.

    Must run before torchvision is imported; later calls (and calls after the import) do nothing.
    """
    global _shim_library
    if "torchvision" in sys.modules or _shim_library is not None:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return False
    import torch

    libs = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "_C*.so"))
    try:
        if libs:
            torch.ops.load_library(libs[0])
            return False
    except (OSError, RuntimeError):
        pass
    try:
        library = torch.library.Library("torchvision", "DEF")
        for schema in _TORCHVISION_OPS:
            library.define(schema)
    except RuntimeError:  # defined already by someone else
        return False
    _shim_library = library
    return True
