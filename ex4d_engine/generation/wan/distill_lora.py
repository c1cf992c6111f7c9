"""The lightx2v 4-step distill LoRA (``wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors``), fused
into the DiT weights for the ``turbo`` preset.

Released key layout (one safetensors file; keys may carry a ``diffusion_model.`` prefix), as the
diffusers converter (huggingface/diffusers PR 12040) and ComfyUI's load logs show it:

- ``<linear>.lora_down.weight`` (rank, in) + ``<linear>.lora_up.weight`` (out, rank), optional
  ``<linear>.alpha`` (scale alpha / rank; none = 1): W += up @ down, for the blocks' attention
  (q, k, v, o, k_img, v_img) and ffn.0 / ffn.2, and for text/time embedding, time projection, head
  and img_emb linears;
- ``<module>.diff_b``: bias delta; ``<module>.diff``: full weight delta (the norms' scales);
- ``blocks.{i}.diff_m``: delta of the block's ``modulation`` (1, 6, dim).

Every key is applied or the file is refused with the keys that could not be placed; nothing is
half-applied. The module names are Wan's official ones, which diffsynth's WanModel keeps.
"""

from __future__ import annotations

import os
from collections import defaultdict

import torch
from torch import nn

from ...errors import NotFoundError, ResourceError
from .lora import _clean_name
from .speed import TURBO_LORA_FILE, TURBO_LORA_REPO

PREFIX = "diffusion_model."
SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha", ".diff_b", ".diff_m", ".diff")


def find_turbo_lora(models_dir: str) -> str:
    """The distill LoRA next to the Wan weights (or in their parent folder); NotFoundError with the
    download command otherwise."""
    for folder in (models_dir, os.path.dirname(os.path.abspath(models_dir))):
        path = os.path.join(folder, TURBO_LORA_FILE)
        if os.path.isfile(path):
            return path
    raise NotFoundError(
        f"the 'turbo' preset needs {TURBO_LORA_FILE} in {models_dir} (or its parent folder); download it with\n"
        f"  hf download {TURBO_LORA_REPO} {TURBO_LORA_FILE} --local-dir {models_dir}\n"
        "or choose another speed preset (exact, default, fast)")


def read_distill_lora(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise NotFoundError(f"distill LoRA not found: {path}")
    from safetensors.torch import load_file

    try:
        state = load_file(path, device="cpu")
    except Exception as exc:  # safetensors raises its own error types for truncated/foreign files
        raise ResourceError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    return {k[len(PREFIX):] if k.startswith(PREFIX) else k: v for k, v in state.items()}


def _split(key: str) -> tuple[str, str]:
    for suffix in SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], suffix
    return key, ""


def _clean(named) -> dict:
    """Name -> object with diffsynth's VRAM-management ``.module`` wrapper parts dropped."""
    out = {}
    for name, obj in named:
        out.setdefault(_clean_name(name), obj)
    return out


def plan_deltas(dit: nn.Module, state: dict[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """(parameter name -> list of (kind, tensors)), keys that cannot be placed."""
    modules = _clean(dit.named_modules())
    params = _clean(dit.named_parameters())
    groups: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    refused = []
    for key, value in state.items():
        base, suffix = _split(key)
        if not suffix:
            refused.append(f"{key} (unknown kind)")
            continue
        groups[base][suffix] = value
    deltas: dict[str, list] = defaultdict(list)
    for base, parts in groups.items():
        if ".diff_m" in parts:
            target = f"{base}.modulation"
            if target not in params or params[target].shape != parts[".diff_m"].shape:
                refused.append(f"{base}.diff_m (no {target} of shape {tuple(parts['.diff_m'].shape)})")
            else:
                deltas[target].append(parts[".diff_m"])
        module = modules.get(base)
        if module is None:
            refused.extend(f"{base}{s} (no module {base!r})" for s in parts if s != ".diff_m")
            continue
        weight = getattr(module, "weight", None)
        if ".lora_down.weight" in parts or ".lora_up.weight" in parts:
            down, up = parts.get(".lora_down.weight"), parts.get(".lora_up.weight")
            if down is None or up is None:
                refused.append(f"{base}: lora_down and lora_up must come together")
            elif weight is None or (up.shape[0], down.shape[1]) != (weight.shape[0], weight[0].numel()):
                refused.append(f"{base}: LoRA {tuple(up.shape)} @ {tuple(down.shape)} does not fit weight "
                               f"{None if weight is None else tuple(weight.shape)}")
            else:
                rank = down.shape[0]
                scale = float(parts[".alpha"]) / rank if ".alpha" in parts else 1.0
                deltas[f"{base}.weight"].append(("lora", up, down, scale))  # formed on the compute device
        elif ".alpha" in parts:
            refused.append(f"{base}.alpha without lora_down/lora_up")
        if ".diff" in parts:
            if weight is None or weight.shape != parts[".diff"].shape:
                refused.append(f"{base}.diff {tuple(parts['.diff'].shape)} does not fit "
                               f"{None if weight is None else tuple(weight.shape)}")
            else:
                deltas[f"{base}.weight"].append(parts[".diff"])
        if ".diff_b" in parts:
            bias = getattr(module, "bias", None)
            if bias is None or bias.shape != parts[".diff_b"].shape:
                refused.append(f"{base}.diff_b {tuple(parts['.diff_b'].shape)} does not fit bias "
                               f"{None if bias is None else tuple(bias.shape)}")
            else:
                deltas[f"{base}.bias"].append(parts[".diff_b"])
    return deltas, refused


@torch.no_grad()
def fuse_distill_lora(dit: nn.Module, path: str, strength: float = 1.0, compute_device=None) -> dict:
    """Add every delta of the file at ``path`` into ``dit`` (in float32, stored back in each
    parameter's dtype). Returns counts. ResourceError, before changing anything, if any key cannot
    be placed."""
    state = read_distill_lora(path)
    deltas, refused = plan_deltas(dit, state)
    if refused:
        raise ResourceError(f"{path}: {len(refused)} of {len(state)} tensors do not fit this Wan DiT "
                            f"(e.g. {'; '.join(refused[:3])}). Use {TURBO_LORA_FILE} from {TURBO_LORA_REPO} "
                            "with Wan2.1-I2V-14B-480P")
    params = _clean(dit.named_parameters())
    for name, parts in deltas.items():
        param = params[name]
        device = torch.device(compute_device) if compute_device is not None else param.device
        total = param.data.to(device=device, dtype=torch.float32)
        for delta in parts:
            if isinstance(delta, tuple):  # a LoRA pair: scale * up @ down, never all at once in host memory
                _, up, down, scale = delta
                up = up.to(device=device, dtype=torch.float32).flatten(1)
                down = down.to(device=device, dtype=torch.float32).flatten(1)
                total.add_((up @ down).reshape(total.shape), alpha=strength * scale)
            else:
                total.add_(delta.to(device=device, dtype=torch.float32), alpha=strength)
        param.data.copy_(total.to(param.dtype))
    return {"tensors": len(state), "parameters": len(deltas)}


def tiny_distill_lora(dit: nn.Module, rank: int = 8, seed: int = 0, scale: float = 0.02) -> dict[str, torch.Tensor]:
    """A random LoRA for ``dit`` in the released key layout, prefix and all: every kind of key the
    release holds (lora_down/up + alpha on the linears, diff_b, diff on the norms, diff_m)."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=gen) * scale  # noqa: E731
    out = {}
    for name, module in dit.named_modules():
        key = PREFIX + name
        if isinstance(module, nn.Linear):
            out[f"{key}.lora_down.weight"] = rand(rank, module.in_features)
            out[f"{key}.lora_up.weight"] = rand(module.out_features, rank)
            out[f"{key}.alpha"] = torch.tensor(float(rank))
            if module.bias is not None:
                out[f"{key}.diff_b"] = rand(module.out_features)
        elif getattr(module, "weight", None) is not None and module.weight.ndim == 1:  # norms with a scale
            out[f"{key}.diff"] = rand(module.weight.shape[0])
            if getattr(module, "bias", None) is not None:
                out[f"{key}.diff_b"] = rand(module.bias.shape[0])
    for i, block in enumerate(dit.blocks):
        out[f"{PREFIX}blocks.{i}.diff_m"] = rand(*block.modulation.shape)
    return {k: v.to(torch.bfloat16) for k, v in out.items()}
