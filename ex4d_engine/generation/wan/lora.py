"""EX-4D's LoRA on the Wan DiT: rank 16 (read from the file), alpha 16, on every block's
self/cross attention q, k, v, o and ffn.0 / ffn.2 (not cross_attn.k_img / v_img).

Two ways to apply it:
- :func:`fuse_lora` adds scale * B @ A into each Linear's weight, once. No cost per forward.
  Works on plain Linears and on diffsynth's VRAM-managed ``AutoWrappedLinear`` (whose weight
  then lives in host memory).
- :func:`inject_unfused_lora` keeps A and B separate through peft, exactly as the seed did
  (measured 12 % slower per DiT forward on an H100). Used for the seed-style benchmark and to
  check the fused form against it.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

#: Module-name suffixes the seed gave peft (``target_modules="q,k,v,o,ffn.0,ffn.2"``).
TARGET_SUFFIXES = ("q", "k", "v", "o", "ffn.0", "ffn.2")
#: The seed's ``lora_alpha``; peft scales B @ A by alpha / rank.
LORA_ALPHA = 16.0


def _clean_name(name: str) -> str:
    """diffsynth's VRAM management wraps blocks as ``<block>.module.<child>``; drop those parts."""
    return ".".join(part for part in name.split(".") if part != "module")


def is_target(name: str) -> bool:
    """peft's rule: the name equals a target or ends with '.' + target."""
    return any(name == s or name.endswith("." + s) for s in TARGET_SUFFIXES)


def target_linears(dit: nn.Module) -> dict[str, nn.Linear]:
    """Clean module name -> Linear, for every LoRA target of ``dit``, in module order."""
    found: dict[str, nn.Linear] = {}
    for name, module in dit.named_modules():
        clean = _clean_name(name)
        if isinstance(module, nn.Linear) and is_target(clean) and clean not in found:
            found[clean] = module
    return found


def lora_keys(name: str) -> tuple[str, str]:
    """The checkpoint keys of one target (peft's ``default`` adapter naming)."""
    return f"{name}.lora_A.default.weight", f"{name}.lora_B.default.weight"


@torch.no_grad()
def fuse_lora(dit: nn.Module, lora: dict[str, torch.Tensor], alpha: float = LORA_ALPHA,
              compute_device=None) -> int:
    """Add (alpha / rank) * B @ A into every target weight. Returns the number of fused layers.

    ``lora`` holds the ``<name>.lora_A.default.weight`` / ``lora_B`` pairs (already validated by
    :mod:`.checkpoint`). The sum is formed in float32 on ``compute_device`` (default: where the
    weight is; pass the GPU for weights kept in host memory -- measured 35 s on CPU for the 14B
    DiT), then stored back in the weight's dtype and place.
    """
    fused = 0
    for name, linear in target_linears(dit).items():
        key_a, key_b = lora_keys(name)
        if key_a not in lora:
            continue
        weight = linear.weight
        if weight.device.type == "meta":
            raise RuntimeError(f"{name}: weight is offloaded to disk; LoRA fusing needs it in memory")
        device = torch.device(compute_device) if compute_device is not None else weight.device
        a = lora[key_a].to(device=device, dtype=torch.float32)
        b = lora[key_b].to(device=device, dtype=torch.float32)
        merged = weight.data.to(device=device, dtype=torch.float32).addmm_(b, a, alpha=alpha / a.shape[0])
        weight.data.copy_(merged.to(weight.dtype))
        fused += 1
    return fused


def inject_unfused_lora(dit: nn.Module, lora: dict[str, torch.Tensor], alpha: float = LORA_ALPHA) -> int:
    """Wrap the targets with peft LoRA layers (the seed's way) and load A, B. Returns layers loaded.

    Only for a DiT without VRAM management (peft must see plain Linears).
    """
    from peft import LoraConfig, inject_adapter_in_model

    rank = next(iter(v for k, v in lora.items() if k.endswith("lora_A.default.weight"))).shape[0]
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=list(TARGET_SUFFIXES))
    inject_adapter_in_model(config, dit)
    reference = next(dit.parameters())
    missing, _ = dit.load_state_dict(
        {k: v.to(device=reference.device, dtype=reference.dtype) for k, v in lora.items()}, strict=False)
    lora_params = [n for n, _ in dit.named_parameters() if ".lora_" in n]
    not_loaded = [n for n in lora_params if n in set(missing)]
    if not_loaded:
        raise RuntimeError(f"peft LoRA parameters not in the checkpoint: {not_loaded[:3]}")
    dit.requires_grad_(False)
    for name, param in dit.named_parameters():  # the seed ran them in bf16 after VRAM management cast them
        if ".lora_" in name:
            param.data = param.data.to(reference.dtype)
    return len(lora_params) // 2


def lora_names(keys: Iterable[str]) -> set[str]:
    return {k[: -len(".lora_A.default.weight")] for k in keys if k.endswith(".lora_A.default.weight")}
