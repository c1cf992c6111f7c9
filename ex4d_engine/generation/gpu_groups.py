"""GPU-group rules shared by the server (stdlib only: the HTTP process reads them) and the parallel gang
(:mod:`ex4d_engine.generation.wan.parallel`, :mod:`ex4d_engine.generation.wan.dit_parallel`)."""

from __future__ import annotations

from ..errors import InputError

#: Attention heads of Wan2.1-I2V-14B; Ulysses splits them, so its degree must divide them.
WAN_ATTENTION_HEADS = 40
#: NVLink multicast off in NCCL, PyTorch symmetric memory and NVSHMEM, in every process ex4d starts.
MULTICAST_OFF_ENV = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def group_sizes(heads: int = WAN_ATTENTION_HEADS) -> list[int]:
    """Sizes a group may have: 1, or even and dividing ``heads``.

    A step with guidance runs its two branches on the two halves (CFG-parallel), each half as a
    Ulysses group of size/2; a step without guidance (a distilled preset) is one Ulysses group of
    the whole size. Both degrees must divide the heads, and the split needs an even group.
    """
    return [n for n in range(1, heads + 1) if heads % n == 0 and (n == 1 or n % 2 == 0)]


def check_group_size(size: int, heads: int = WAN_ATTENTION_HEADS) -> None:
    """Raise InputError unless ``size`` GPUs can share one Wan generator."""
    allowed = ", ".join(map(str, group_sizes(heads)))
    if size < 1 or heads % size:
        raise InputError(f"a GPU group of {size} cannot split Wan's {heads} attention heads; the group size must "
                         f"be 1 or an even divisor of {heads}: {allowed}")
    if size > 1 and size % 2:
        raise InputError(f"a GPU group of {size} is odd: the two guidance branches run on two halves of a group "
                         f"(CFG-parallel), so the group size must be 1 or an even divisor of {heads}: {allowed}")
