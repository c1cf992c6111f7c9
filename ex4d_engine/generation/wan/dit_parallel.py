"""CFG-parallel x Ulysses sequence parallel for the Wan DiT, on PyTorch's own collectives.

A GPU group of N ranks runs one DiT forward together:

* **CFG-parallel** (N even, guidance on): the pipeline is asked for both guidance branches in one
  call (diffsynth's ``cfg_merge``: batch 2 = [positive, negative]); the first half of the group
  computes the positive branch, the second half the negative one, and the two results are
  exchanged at the end (one all-gather of the small noise prediction per step).
* **Ulysses** inside each half (or over the whole group when there is no CFG, e.g. a 4-step
  distilled preset): each rank keeps ``1/P`` of the video tokens through the blocks; around
  self-attention one all-to-all swaps "my tokens, all heads" for "all tokens, my heads", the
  attention runs on whole sequences with the same kernel as the single-GPU path, and a second
  all-to-all swaps back. Cross-attention (text, CLIP) needs no communication. Wan2.1-14B has
  40 heads, so P must divide 40.

The DiT blocks stay ``torch.compile``d under parallelism: the attention core (all-to-all, kernel,
all-to-all) runs between two compiled parts of each block, so one set of graphs serves every split
and token count (the attention kernel is opaque to inductor anyway). The collectives are
``torch.distributed._functional_collectives``, so ``compile_collectives=True`` can trace them in.
Nothing here knows about presets: whatever the blocks'
linears are (bf16, FP8) and whichever attention kernel diffsynth's ``flash_attention`` picks, the
parallel DiT runs it. A token count that does not divide by P is zero-padded at the end and the
padding is cut off before attention, so the result does not depend on P.

Use: every rank of the group calls ``groups = ParallelGroups()`` (all ranks, same order), then
``enable_parallel(wan_pipeline, groups)`` (or ``ParallelDiT(dit, groups)`` + ``.wrap(model_fn)``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ...errors import InputError
from ..gpu_groups import WAN_ATTENTION_HEADS

#: model_fn keyword arguments that carry the guidance batch (diffsynth's WanVideoUnit_CfgMerger).
CFG_BATCHED = ("context", "clip_feature", "y", "reference_latents")


@dataclass(frozen=True)
class Layout:
    """How a group of ``cfg * ulysses`` ranks splits one denoising step."""

    cfg: int
    ulysses: int

    @property
    def size(self) -> int:
        return self.cfg * self.ulysses


def plan_layout(size: int, guidance: bool, heads: int = WAN_ATTENTION_HEADS) -> Layout:
    """The split of a group of ``size``: CFG over two halves when guidance is on and the group is
    even, Ulysses over the rest. Raises InputError when the Ulysses degree does not divide ``heads``."""
    layout = Layout(2, size // 2) if guidance and size % 2 == 0 else Layout(1, size)
    if size < 1 or heads % layout.ulysses:
        raise InputError(f"a GPU group of {size} cannot split Wan's {heads} attention heads "
                         f"(Ulysses degree {layout.ulysses})")
    return layout


class ParallelGroups:
    """The process groups of one GPU group, built from the default process group.

    Every rank of the default group must construct it with the same ``ranks`` (the group's global
    ranks, default all), because ``new_group`` is collective; ranks outside ``ranks`` get an object
    with ``member == False``.

    Attributes:
        whole: Ulysses group over all ranks (steps without CFG).
        half: Ulysses group over this rank's half (CFG-parallel steps); None for odd groups.
        pair: this rank and its counterpart in the other half (exchanges the two branches).
        cfg_index: 0 in the first half (positive branch), 1 in the second.
    """

    def __init__(self, ranks: Optional[Sequence[int]] = None):
        import torch.distributed as dist

        ranks = list(range(dist.get_world_size()) if ranks is None else ranks)
        me = dist.get_rank()
        self.ranks, self.size = ranks, len(ranks)
        self.member = me in ranks
        index = ranks.index(me) if self.member else 0
        self.whole = _SPGroup.make(ranks, me)
        self.half = self.pair = None
        self.cfg_index = 0
        if self.size % 2 == 0:
            h = self.size // 2
            halves = [_SPGroup.make(ranks[:h], me), _SPGroup.make(ranks[h:], me)]
            pairs = [_SPGroup.make([ranks[j], ranks[j + h]], me) for j in range(h)]
            self.half, self.pair, self.cfg_index = halves[index // h], pairs[index % h], index // h

    @property
    def can_split_cfg(self) -> bool:
        return self.half is not None

    def layout(self, guidance: bool) -> Layout:
        return Layout(2, self.size // 2) if guidance and self.can_split_cfg else Layout(1, self.size)


@dataclass(frozen=True)
class _SPGroup:
    """A process group plus this rank's place in it (size 1: no group, no communication)."""

    group: object
    size: int
    rank: int

    @staticmethod
    def make(ranks: list[int], me: int) -> "_SPGroup":
        """One object per rank list and process: groups of the same ranks share a communicator (and
        compiled graphs). ``new_group`` is collective: every rank makes the same groups in the same order."""
        import torch.distributed as dist

        key = tuple(ranks)
        if key not in _SP_GROUPS:
            group = dist.new_group(ranks) if len(ranks) > 1 else None
            _SP_GROUPS[key] = _SPGroup(group, len(ranks), ranks.index(me) if me in ranks else -1)
        return _SP_GROUPS[key]


_SP_GROUPS: dict = {}


@dataclass(frozen=True)
class _Shard:
    """The sequence split of the DiT forward now running."""

    sp: _SPGroup
    seq_len: int  # video tokens

    @property
    def local(self) -> int:  # tokens per rank, after padding to a multiple of the group size
        return -(-self.seq_len // self.sp.size)


def _all_to_all(x: torch.Tensor, group) -> torch.Tensor:
    """Equal-split all-to-all along dim 0 (traceable by torch.compile)."""
    from torch.distributed import _functional_collectives as funcol

    return funcol.wait_tensor(funcol.all_to_all_single(x.contiguous(), None, None, group))


def _all_gather(x: torch.Tensor, dim: int, group) -> torch.Tensor:
    """All ranks' ``x`` concatenated along ``dim`` (rank order)."""
    from torch.distributed import _functional_collectives as funcol

    gather = getattr(funcol, "all_gather_single", None) or funcol.all_gather_tensor  # the newer name first
    out = funcol.wait_tensor(gather(x.movedim(dim, 0).contiguous(), 0, group))
    return out.movedim(0, dim)


def _default_attention(q, k, v, num_heads):
    from diffsynth.models import wan_video_dit

    return wan_video_dit.flash_attention(q, k, v, num_heads=num_heads)  # looked up per call: a preset may swap it


class UlyssesAttention(torch.nn.Module):
    """Self-attention core under Ulysses: (b, s/P, n*d) q, k, v in, (b, s/P, n*d) out."""

    def __init__(self, num_heads: int, owner: "ParallelDiT"):
        super().__init__()
        self.num_heads = num_heads
        self._owner = [owner]  # a list: not registered as a submodule

    def forward(self, q, k, v):
        owner = self._owner[0]
        if not owner.active:  # a plain bool: compiled code guards on it, not on the split
            return owner.attention(q, k, v, self.num_heads)
        return owner.attention_core(owner, self.num_heads, q, k, v)


def _ulysses_attention(owner: "ParallelDiT", num_heads: int, q, k, v):
    """All-to-all, attention over whole sequences on this rank's heads, all-to-all back."""
    shard = owner.shard
    if shard is None or shard.sp.size == 1:
        return owner.attention(q, k, v, num_heads)
    p, n = shard.sp.size, num_heads
    b, local, _ = q.shape
    # (b, L, P, n/P, d) -> (P, 3, b, L, n/P, d): block j of heads goes to rank j
    qkv = torch.stack([q, k, v]).view(3, b, local, p, n // p, -1).permute(3, 0, 1, 2, 4, 5)
    qkv = _all_to_all(qkv, shard.sp.group)
    # received block i = rank i's tokens: (P, 3, b, L, n/P, d) -> (3, b, P*L, (n/P)*d)
    qkv = qkv.permute(1, 2, 0, 3, 4, 5).reshape(3, b, p * local, -1)
    q, k, v = qkv[:, :, : shard.seq_len].unbind(0)  # padding never attends or is attended
    out = owner.attention(q, k, v, n // p)  # (b, S, (n/P)*d)
    if p * local != shard.seq_len:
        out = torch.nn.functional.pad(out, (0, 0, 0, p * local - shard.seq_len))
    out = out.reshape(b, p, local, n // p, -1).permute(1, 0, 2, 3, 4)  # block i -> rank i
    out = _all_to_all(out, shard.sp.group)  # (P, b, L, n/P, d): block j = head group j
    return out.permute(1, 2, 0, 3, 4).reshape(b, local, -1)


#: Outside torch.compile: the attention kernel is opaque to inductor anyway, and the compiled block
#: parts around it then depend on no token count or group, so one graph serves every split and size.
_ulysses_attention_eager = torch.compiler.disable(_ulysses_attention)


class ParallelDiT:
    """A Wan DiT set up to run over a :class:`ParallelGroups` (changed in place; :meth:`remove` undoes it).

    Args:
        dit: diffsynth ``WanModel`` (compiled blocks or not, any linears).
        groups: this rank's groups.
        attention: ``fn(q, k, v, num_heads)`` on (b, s, heads*d); default diffsynth's ``flash_attention``.
        compile_collectives: trace the all-to-alls and the attention into the compiled blocks
            (one graph per block, but one per split and token count too); default False runs
            them between two compiled parts of each block.
    """

    def __init__(self, dit, groups: ParallelGroups, attention: Optional[Callable] = None,
                 compile_collectives: bool = False):
        heads = dit.blocks[0].self_attn.num_heads
        for guidance in (True, False):
            plan_layout(groups.size, guidance, heads)
        self.dit, self.groups = dit, groups
        self.attention = attention or _default_attention
        self.attention_core = _ulysses_attention if compile_collectives else _ulysses_attention_eager
        self.shard: Optional[_Shard] = None
        self.active = False  # shard is not None
        self._shards: dict = {}  # one _Shard per (group, token count)
        self._saved = []
        self._handles = []
        for block in dit.blocks:
            self._saved.append((block.self_attn, block.self_attn.attn))
            block.self_attn.attn = UlyssesAttention(block.self_attn.num_heads, self)
            self._handles.append(block.register_forward_pre_hook(self._block_pre_hook))
        self._handles.append(dit.head.register_forward_hook(self._gather_head_output))
        _raise_recompile_limits()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for module, attn in self._saved:
            module.attn = attn
        self._handles, self._saved = [], []

    # -- the sequence split, by hooks around diffsynth's own model_fn ---------------------------
    def _block_pre_hook(self, block, args):
        if not self.active:  # traced into the compiled block: no graph break without a split
            return None
        return self._shard_block_inputs(block, args)

    @torch.compiler.disable
    def _shard_block_inputs(self, block, args):
        shard = self.shard
        if shard is None or shard.sp.size == 1:
            return None
        x, context, t_mod, freqs = args
        start, local = shard.sp.rank * shard.local, shard.local
        if x.shape[1] == shard.seq_len:  # the first block: keep this rank's tokens
            x = _pad_rows(x, 1, shard.local * shard.sp.size).narrow(1, start, local)
        if freqs.shape[0] == shard.seq_len:  # RoPE angles of this rank's tokens
            freqs = _pad_rows(freqs, 0, shard.local * shard.sp.size).narrow(0, start, local)
        return (x, context, t_mod, freqs)

    def _gather_head_output(self, head, args, out):
        shard = self.shard
        if shard is None or shard.sp.size == 1:
            return None
        return _all_gather(out, 1, shard.sp.group)[:, : shard.seq_len]

    @contextlib.contextmanager
    def sharded(self, sp: _SPGroup, seq_len: int):
        """Split the tokens over ``sp`` while the context is open (a group of 1: plain forward, same graph)."""
        self.shard = None if sp.size == 1 else self._shards.setdefault((id(sp), seq_len), _Shard(sp, seq_len))
        self.active = self.shard is not None
        try:
            yield
        finally:
            self.shard, self.active = None, False

    def wrap(self, model_fn: Callable) -> Callable:
        """``model_fn`` (diffsynth's ``model_fn_wan_video`` or one like it) run over the group."""

        def parallel_model_fn(**kwargs):
            dit = kwargs["dit"]
            if dit is not self.dit:
                return model_fn(**kwargs)
            latents, context = kwargs["latents"], kwargs["context"]
            pt, ph, pw = dit.patch_size
            seq_len = (latents.shape[2] // pt) * (latents.shape[3] // ph) * (latents.shape[4] // pw)
            if kwargs.get("reference_latents") is not None:
                raise InputError("the parallel Wan DiT does not take reference latents")
            groups = self.groups
            cache = kwargs.get("tea_cache")
            if groups.can_split_cfg and context.shape[0] == 2:  # [positive, negative]: one branch per half
                i = groups.cfg_index
                part = {k: (v[i:i + 1] if k in CFG_BATCHED and torch.is_tensor(v) and v.shape[0] == 2 else v)
                        for k, v in kwargs.items()}
                part["tea_cache"] = cache[i] if isinstance(cache, tuple) else cache  # this branch's step cache
                with self.sharded(groups.half, seq_len):
                    out = model_fn(**self._shard_cache(part))
                return _all_gather(out, 0, groups.pair.group)
            if isinstance(cache, tuple):
                raise InputError("per-branch step caches need a CFG-parallel (even) group")
            with self.sharded(groups.whole, seq_len):
                return model_fn(**self._shard_cache(kwargs))

        parallel_model_fn.parallel_dit = self
        return parallel_model_fn


    def _shard_cache(self, kwargs: dict) -> dict:
        """A step cache (diffsynth's TeaCache slot: MagCache, TeaCache) sees this rank's tokens only."""
        cache = kwargs.get("tea_cache")
        if cache is None or self.shard is None:
            return kwargs
        return dict(kwargs, tea_cache=ShardedStepCache(cache, self))


class ShardedStepCache:
    """Adapts a step cache (``check(dit, x, t_mod)`` / ``update(x)`` / ``store(x)`` around the blocks in
    ``model_fn_wan_video``) to sequence parallel: ``check`` and ``update`` get the full token sequence
    there, ``store`` this rank's shard; the cache keeps this rank's shard throughout. Its skip decisions
    must not depend on the tokens (MagCache's are a fixed plan), or the ranks could disagree."""

    def __init__(self, cache, parallel: ParallelDiT):
        self.cache, self.parallel = cache, parallel

    def _local(self, x):
        shard = self.parallel.shard
        if x.shape[1] != shard.seq_len:
            return x
        return _pad_rows(x, 1, shard.local * shard.sp.size).narrow(1, shard.sp.rank * shard.local, shard.local)

    def check(self, dit, x, t_mod):
        return self.cache.check(dit, self._local(x), t_mod)

    def update(self, x):
        return self.cache.update(self._local(x))  # the head's gather hook then joins the shards

    def store(self, x):
        return self.cache.store(x)


def enable_parallel(pipeline, groups: ParallelGroups, **kwargs) -> ParallelDiT:
    """Run an :class:`~.adapter.WanPipeline`'s DiT over ``groups``: wraps diffsynth's ``model_fn`` and,
    for an even group, asks the pipeline for both guidance branches in one call (``cfg_merge``) while
    keeping each branch's step cache (diffsynth's CfgMerger would drop them)."""
    pipe = pipeline.pipe
    parallel = ParallelDiT(pipe.dit, groups, **kwargs)
    pipe.model_fn = parallel.wrap(pipe.model_fn)
    if groups.can_split_cfg:
        pipeline.cfg_merge = True
        pipe.units = [branch_cache_cfg_merger() if type(u).__name__ == "WanVideoUnit_CfgMerger" else u
                      for u in pipe.units]
    return parallel


def branch_cache_cfg_merger():
    """diffsynth's CfgMerger unit, but the two branches' step caches survive as a (positive, negative)
    pair in the shared inputs (the parallel ``model_fn`` hands each half its own)."""
    from .adapter import ensure_diffsynth

    ensure_diffsynth()
    from diffsynth.pipelines.wan_video import WanVideoUnit_CfgMerger

    class BranchCacheCfgMerger(WanVideoUnit_CfgMerger):
        def process(self, pipe, inputs_shared, inputs_posi, inputs_nega):
            caches = (inputs_posi.get("tea_cache"), inputs_nega.get("tea_cache"))
            inputs_shared, inputs_posi, inputs_nega = super().process(pipe, inputs_shared, inputs_posi, inputs_nega)
            if inputs_shared["cfg_merge"] and caches != (None, None):
                inputs_shared["tea_cache"] = caches
            return inputs_shared, inputs_posi, inputs_nega

    return BranchCacheCfgMerger()


def _pad_rows(x: torch.Tensor, dim: int, length: int) -> torch.Tensor:
    """``x`` padded at the end of ``dim`` to ``length`` rows (zeros; repeated last row for complex RoPE angles)."""
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    last = x.narrow(dim, x.shape[dim] - 1, 1)
    filler = last.expand(*[missing if d == dim else s for d, s in enumerate(x.shape)])
    return torch.cat([x, filler if x.is_complex() else torch.zeros_like(filler)], dim=dim)


def _raise_recompile_limits() -> None:
    """Each split (none, half, whole) is its own compiled graph of the shared block code: allow them."""
    import torch._dynamo.config as config

    for name, value in (("cache_size_limit", 64), ("recompile_limit", 64), ("accumulated_cache_size_limit", 512),
                        ("accumulated_recompile_limit", 512)):
        if hasattr(config, name) and getattr(config, name) < value:
            setattr(config, name, value)
