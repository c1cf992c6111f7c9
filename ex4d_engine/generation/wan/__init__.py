"""Wan2.1-I2V-14B-480P + the EX-4D camera-video adapter and LoRA, on diffsynth 2.1.12.

Only :mod:`.adapter` talks to diffsynth's API; the rest is plain torch/numpy. Importing this
package is cheap and imports no torch: diffsynth and torch load when a generator is built.
"""

from .generator import WanGenerator, load_generator
from .model_folder import models_status
from .sizes import pick_size

__all__ = ["WanGenerator", "load_generator", "models_status", "pick_size"]
