"""GPU-group rules shared by the server (stdlib only: the HTTP process reads them) and the USP gang
(:mod:`ex4d_engine.generation.wan.parallel`)."""

from __future__ import annotations

from ..errors import InputError

#: Attention heads of Wan2.1-I2V-14B; a USP group's size must divide them (Ulysses splits heads).
WAN_ATTENTION_HEADS = 40
#: NVLink multicast off in NCCL, PyTorch symmetric memory and NVSHMEM, in every process ex4d starts.
MULTICAST_OFF_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def check_group_size(size: int, heads: int = WAN_ATTENTION_HEADS) -> None:
    """Raise InputError unless ``size`` GPUs can share one Wan generator (Ulysses splits the heads)."""
    divisors = [d for d in range(1, heads + 1) if heads % d == 0]
    if size < 1 or heads % size:
        raise InputError(f"a GPU group of {size} cannot split Wan's {heads} attention heads; the group size must "
                         f"divide {heads}: {', '.join(map(str, divisors))}")
