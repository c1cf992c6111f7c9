"""FP8 (e4m3) weights and activations for the DiT block linears.

On a GPU with FP8 tensor cores (compute capability >= 8.9: Ada, Hopper, Blackwell) and torchao
installed, :func:`apply_fp8` runs torchao's ``Float8DynamicActivationFloat8WeightConfig`` with
row-wise scales (weights quantised once, activations per call) on every ``nn.Linear`` inside the
40 blocks; ``torch.compile`` of the blocks then fuses the scaling into the matmuls.

Anywhere else (CPU, older GPUs, no torchao, a DiT streamed from host memory) the preset falls back
to the bf16 linears with a warning, and the shot's metadata records why (choice documented in
docs/generation.md: a preset never fails for lack of FP8 hardware).

:func:`emulate_fp8` is the CPU-capable equivalent used by tests: the same e4m3 row-wise rounding
of weights (once) and activations (per call), followed by an ordinary matmul. It reproduces the
numbers the FP8 path sees, not its kernel or its speed.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import nn

log = logging.getLogger(__name__)

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0


def fp8_unavailable_reason(device, dit_resident: bool = True) -> Optional[str]:
    """None when torchao FP8 can run on ``device``; otherwise why not (for the warning and metadata)."""
    if not dit_resident:
        return "FP8 needs the DiT resident on the GPU (the 'full' VRAM profile)"
    if not str(device).startswith("cuda"):
        return f"FP8 needs a CUDA GPU with compute capability >= 8.9; the device is {device!r}"
    if not torch.cuda.is_available():
        return "FP8 needs a CUDA GPU, and PyTorch sees none"
    major, minor = torch.cuda.get_device_capability(torch.device(device))
    if (major, minor) < (8, 9):
        return (f"FP8 needs compute capability >= 8.9; {torch.cuda.get_device_name(torch.device(device))} "
                f"is {major}.{minor}")
    try:
        import torchao  # noqa: F401
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig  # noqa: F401
    except ImportError as exc:
        return f"FP8 needs torchao (pip install 'ex4d[fast]'): {exc}"
    return None


def block_linears(dit: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(f"blocks.{name}", m) for name, m in dit.blocks.named_modules() if isinstance(m, nn.Linear)]


#: Scale granularity of :func:`apply_fp8`: "row" (one scale per weight row and per token) or "tensor"
#: (one per tensor; cheaper kernels, coarser rounding). bench/speed_presets.py --fp8-granularity compares them.
GRANULARITY = "row"


def apply_fp8(dit: nn.Module, granularity: Optional[str] = None) -> int:
    """torchao FP8 for every Linear in ``dit.blocks``. Returns the number of layers converted."""
    granularity = granularity or GRANULARITY
    if granularity not in ("row", "tensor"):
        raise ValueError(f"FP8 granularity must be 'row' or 'tensor', not {granularity!r}")
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor, quantize_

    count = len(block_linears(dit))
    scales = PerRow() if granularity == "row" else PerTensor()
    quantize_(dit.blocks, Float8DynamicActivationFloat8WeightConfig(granularity=scales),
              filter_fn=lambda module, fqn: isinstance(module, nn.Linear))
    return count


def fake_quantize_rows(x: torch.Tensor) -> torch.Tensor:
    """Round ``x`` to e4m3 with one scale per row (amax of the last dimension / 448), back in x's dtype."""
    amax = x.detach().abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    return ((x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3).float() * scale).to(x.dtype)


@torch.no_grad()
def emulate_fp8(dit: nn.Module) -> int:
    """The CPU-capable stand-in for :func:`apply_fp8` (see module doc). Returns layers converted."""
    layers = block_linears(dit)
    for _, linear in layers:
        linear.weight.data = fake_quantize_rows(linear.weight.data)
        linear.register_forward_pre_hook(lambda module, args: (fake_quantize_rows(args[0]),) + tuple(args[1:]))
    return len(layers)
