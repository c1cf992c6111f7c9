"""Which attention kernel the Wan DiT uses.

diffsynth 2.1.12's Wan DiT picks FlashAttention-3 > FlashAttention-2 > SageAttention > PyTorch SDPA
by what happens to import (``wan_video_dit.py``), so merely installing a package changes the
numbers. :func:`select_attention` makes the choice explicit. Measured on one H100 (40 heads x
13,312 tokens x 128, docs/PERFORMANCE.md): SDPA's cuDNN path is the fastest exact kernel available
as a wheel (sageattention 1.0.6 is slower there and approximate; flash-attn ships as source only).
FlashAttention-4 is on PyPI as a pre-release (``pip install --pre flash-attn-4``, CuTe DSL kernels
for Hopper and Blackwell); ``flash4`` routes diffsynth's FlashAttention-3 call (same
``(batch, tokens, heads, dim)`` layout) to it. ``sdpa`` stays the default until a kernel is measured
faster on the GPU machine (bench/speed_presets.py's attention probe); the others are used only when
asked for and importable, else SDPA with a warning.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

#: name -> (diffsynth flag, module to import)
BACKENDS = {
    "sdpa": (None, None),
    "flash3": ("FLASH_ATTN_3_AVAILABLE", "flash_attn_interface"),
    "flash4": ("FLASH_ATTN_3_AVAILABLE", "flash_attn.cute"),  # FA4 takes FA3's place in diffsynth
    "flash2": ("FLASH_ATTN_2_AVAILABLE", "flash_attn"),
    "sage": ("SAGE_ATTN_AVAILABLE", "sageattention"),
}


def select_attention(name: str = "sdpa") -> str:
    """Make the Wan DiT use ``name``; returns the backend actually in use ("sdpa" on fallback)."""
    from diffsynth.models import wan_video_dit

    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose one of {', '.join(BACKENDS)}")
    chosen = name
    flag, module = BACKENDS[name]
    if module is not None:
        try:
            imported = importlib.import_module(module)
        except ImportError as exc:
            log.warning("attention backend %s is not installed (%s); using PyTorch SDPA", name, exc)
            chosen = "sdpa"
        else:
            if name == "sage":
                wan_video_dit.sageattn = imported.sageattn
            elif name in ("flash3", "flash4"):
                wan_video_dit.flash_attn_interface = imported
            elif name == "flash2":
                wan_video_dit.flash_attn = imported
    for other_flag in {flag for flag, _ in BACKENDS.values() if flag is not None}:
        setattr(wan_video_dit, other_flag, other_flag == BACKENDS[chosen][0])
    return chosen
