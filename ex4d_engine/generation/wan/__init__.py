"""Wan2.1-I2V-14B-480P + the EX-4D camera-video adapter and LoRA, on diffsynth 2.1.12.

Only :mod:`.adapter` talks to diffsynth's API; the rest is plain torch/numpy. Importing this
package is cheap: diffsynth loads when a generator is built.
"""

from .sizes import pick_size

__all__ = ["pick_size"]
