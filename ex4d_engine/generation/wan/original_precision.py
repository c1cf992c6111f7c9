"""EX-4D's original numerics for the Wan DiT, on diffsynth 2.1.12's modules.

EX-4D ran on DiffSynth-Studio main @ 906aadbf (2025-03-04, installed as "1.1.1"), whose Wan DiT was
the official Wan code: the denoising loop ran under bf16 autocast with **fp32** latents and noise,
an fp32 timestep, an fp32 sinusoid -> time embedding -> time projection, fp32 modulation, an **fp32
residual stream** (``x = x + y * gate`` under fp32 autocast), fp32 layer norms, and an fp32 head;
the linears and attention ran in bf16. diffsynth 2.1.12 keeps all of these in the pipeline dtype
(bf16): it casts the noise and the timestep, the sinusoid, the modulation and the residual.

:func:`original_model_fn` is a drop-in for ``model_fn_wan_video`` (I2V path only: no VACE, USP,
sliding windows or caches) that reproduces the 906aadbf arithmetic with the same weights;
:class:`Fp32NoiseInitializer` keeps the noise in fp32. :class:`.adapter.WanPipeline` runs the whole
call under bf16 autocast, as 906aadbf's encode / denoise / decode did (its T5 ran without autocast;
the prompt unit turns autocast off for it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


class TimestepHolder:
    """The current fp32 timestep: diffsynth casts the one it passes to bf16 (991.7 -> 992)."""

    value: torch.Tensor = None


def _sinusoid(dim: int, position: torch.Tensor) -> torch.Tensor:
    half = dim // 2
    position = position.to(torch.float64)
    sinusoid = torch.outer(position, torch.pow(10000, -torch.arange(half).to(position).div(half)))
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


def _fp32(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a Linear/activation Sequential in fp32 (the official code's ``autocast(float32)``)."""
    for layer in module:
        if isinstance(layer, torch.nn.Linear):
            x = F.linear(x.float(), layer.weight.float(), None if layer.bias is None else layer.bias.float())
        else:
            x = layer(x)
    return x


def _layer_norm(norm: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    weight = None if norm.weight is None else norm.weight.float()
    bias = None if norm.bias is None else norm.bias.float()
    return F.layer_norm(x.float(), norm.normalized_shape, weight, bias, norm.eps)


def _no_autocast(device_type: str):
    return torch.autocast(device_type, enabled=False)


def _block(block, x, context, e0, freqs, device_type):
    with _no_autocast(device_type):
        e = (block.modulation.float() + e0).chunk(6, dim=1)
        h = _layer_norm(block.norm1, x) * (1 + e[1]) + e[0]
    y = block.self_attn(h, freqs)
    with _no_autocast(device_type):
        x = x.float() + y.float() * e[2]
        h = _layer_norm(block.norm3, x)
    x = x + block.cross_attn(h, context).float()
    with _no_autocast(device_type):
        h = _layer_norm(block.norm2, x) * (1 + e[4]) + e[3]
    y = block.ffn(h)
    with _no_autocast(device_type):
        return x + y.float() * e[5]


def make_original_model_fn(holder: TimestepHolder):
    """A ``model_fn`` for WanVideoPipeline with 906aadbf's numerics; the timestep comes from ``holder``."""

    def original_model_fn(dit, latents=None, timestep=None, context=None, clip_feature=None, y=None,
                          tea_cache=None, **unused):
        if tea_cache is not None:
            raise RuntimeError("original precision runs without step caching")
        device_type = latents.device.type
        t = (holder.value if holder.value is not None else timestep).reshape(1).to(latents.device)
        with _no_autocast(device_type):
            e = _fp32(dit.time_embedding, _sinusoid(dit.freq_dim, t).float())
            e0 = _fp32(dit.time_projection, e).unflatten(1, (6, dit.dim))
        context = dit.text_embedding(context)
        x = latents
        if y is not None and dit.require_vae_embedding:
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        if clip_feature is not None and dit.require_clip_embedding:
            clip = dit.img_emb(clip_feature)
            context = torch.cat([clip, context.to(clip.dtype)], dim=1)
        x = dit.patchify(x.to(dit.patch_embedding.weight.dtype) if not torch.is_autocast_enabled(device_type) else x)
        f, h, w = x.shape[2:]
        x = rearrange(x, "b c f h w -> b (f h w) c").contiguous()
        freqs = torch.cat([
            dit.freqs[0][:f].view(f, 1, 1, -1).expand(f, h, w, -1),
            dit.freqs[1][:h].view(1, h, 1, -1).expand(f, h, w, -1),
            dit.freqs[2][:w].view(1, 1, w, -1).expand(f, h, w, -1),
        ], dim=-1).reshape(f * h * w, 1, -1).to(x.device)
        for block in dit.blocks:
            x = _block(block, x, context, e0, freqs, device_type)
        head = dit.head
        with _no_autocast(device_type):
            shift, scale = (head.modulation.float() + e.unsqueeze(1)).chunk(2, dim=1)
            x = _layer_norm(head.norm, x) * (1 + scale) + shift
            x = F.linear(x, head.head.weight.float(), None if head.head.bias is None else head.head.bias.float())
        return dit.unpatchify(x, (f, h, w)).float()

    return original_model_fn


def fp32_noise_unit():
    """diffsynth's noise unit, keeping the noise (and so the latents) in fp32."""
    from diffsynth.pipelines.wan_video import WanVideoUnit_NoiseInitializer

    class Fp32NoiseInitializer(WanVideoUnit_NoiseInitializer):
        def process(self, pipe, height, width, num_frames, seed, rand_device, vace_reference_image,
                    animate2_reference_video):
            length = (num_frames - 1) // 4 + 1
            shape = (1, pipe.vae.model.z_dim, length, height // pipe.vae.upsampling_factor,
                     width // pipe.vae.upsampling_factor)
            return {"noise": pipe.generate_noise(shape, seed=seed, rand_device=rand_device, torch_dtype=torch.float32)}

    return Fp32NoiseInitializer()
