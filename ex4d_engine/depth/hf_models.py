"""Load a ``transformers`` depth model and its image processor from a local folder, offline.

The only code in the depth package that calls ``from_pretrained``. Loading failures (corrupt
safetensors, a config for another architecture) become :class:`ResourceError` naming the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from ..errors import ResourceError
from ..torchvision_shim import apply_torchvision_shim
from .weights import ModelWeights, load_error


def import_transformers() -> Any:
    """``transformers``, or ResourceError saying how to install it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces next to local_files_only
    apply_torchvision_shim()
    try:
        import transformers
    except ImportError as exc:
        raise ResourceError(f"the Python package 'transformers' is needed for this depth backend ({exc}); "
                            "install it with: pip install 'ex4d[depth]'") from None
    return transformers


def load_image_processor(transformers: Any, folder: Path) -> Any:
    """The folder's image processor; without torchvision, the PIL twin of the class its config names.

    Some transformers 5.x releases make ``AutoImageProcessor`` insist on torchvision even where a PIL
    implementation of the same processor (``DPTImageProcessorPil``) exists.
    """
    try:
        return transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except ImportError:
        config = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
        name = str(config.get("image_processor_type", "")).removesuffix("Fast")
        pil_class = getattr(transformers, f"{name}Pil", None) if name else None
        if pil_class is None:
            raise
        return pil_class.from_pretrained(str(folder), local_files_only=True)


def load_depth_model(folder: Path, spec: ModelWeights, *, device: str, dtype_name: str,
                     models_dir: Optional[str] = None) -> tuple[Any, Any]:
    """(image processor, model in eval mode on ``device``) from ``folder``; never downloads."""
    transformers = import_transformers()
    import torch

    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype_name]
    try:
        processor = load_image_processor(transformers, folder)
        model = transformers.AutoModelForDepthEstimation.from_pretrained(
            str(folder), local_files_only=True, dtype=dtype)
    except Exception as exc:  # any loader failure on a bad folder (SafetensorError, ...)
        raise load_error(spec, folder, exc, models_dir) from None
    return processor, model.to(device).eval()
