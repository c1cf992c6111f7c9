"""VRAM profiles, expressed as diffsynth VRAM-management settings, and the "GPU too small" check.

| profile  | DiT                                   | T5 (11 GB)          | VAE, CLIP, adapter | VAE tiling |
|----------|---------------------------------------|---------------------|--------------------|------------|
| full     | resident on the GPU, bf16             | host, runs on GPU*  | resident           | off        |
| balanced | host; layers kept on the GPU up to ~24 GiB used, the rest streamed per step | host* | resident | on |
| low      | host; layers kept on the GPU up to ~14 GiB used, the rest streamed per step | host* | resident | on |

(*) T5 runs once per distinct prompt: the pipeline caches prompt embeddings, so a resident
generator pays for it on the first shot only. The GPU numbers are targets; the measured peaks
are in docs/PERFORMANCE.md (## Generation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ...errors import InputError, ResourceError

GIB = 1024 ** 3


@dataclass(frozen=True)
class Profile:
    """How the models sit in memory.

    Attributes:
        name: "full", "balanced" or "low".
        dit_resident: DiT weights live on the GPU (else in host memory, streamed layer by layer).
        vram_limit_gib: diffsynth's soft limit: streamed layers are kept on the GPU while the
            device's used memory is under it. None when nothing is streamed.
        tiled_vae: tile VAE encode/decode (less memory, about 3x slower VAE).
        min_gpu_gib: the smallest GPU (total memory) the profile is meant for.
        target_peak_gb: the peak this profile is designed to stay under (decimal GB).
    """

    name: str
    dit_resident: bool
    vram_limit_gib: Optional[float]
    tiled_vae: bool
    min_gpu_gib: float
    target_peak_gb: float


PROFILES = {
    "full": Profile("full", dit_resident=True, vram_limit_gib=None, tiled_vae=False, min_gpu_gib=44.0, target_peak_gb=48.0),
    "balanced": Profile("balanced", dit_resident=False, vram_limit_gib=24.0, tiled_vae=True, min_gpu_gib=29.0, target_peak_gb=32.0),
    "low": Profile("low", dit_resident=False, vram_limit_gib=14.0, tiled_vae=True, min_gpu_gib=19.0, target_peak_gb=24.0),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InputError(f"unknown VRAM profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def check_gpu_fits(profile: Profile, device: str) -> None:
    """Raise ResourceError before loading anything if ``device`` is a GPU smaller than the profile needs."""
    if not str(device).startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ResourceError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU")
    _, total = torch.cuda.mem_get_info(torch.device(device))
    total_gib = total / GIB
    if total_gib < profile.min_gpu_gib:
        smaller = [p.name for p in PROFILES.values() if p.min_gpu_gib <= total_gib]
        hint = f"; try --profile {smaller[0]}" if smaller else "; no profile fits this GPU"
        raise ResourceError(f"GPU {torch.cuda.get_device_name(torch.device(device))} has {total_gib:.1f} GiB, "
                            f"profile {profile.name!r} needs at least {profile.min_gpu_gib:.0f} GiB{hint}")
