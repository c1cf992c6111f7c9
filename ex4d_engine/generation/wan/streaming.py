"""Faster streamed VRAM profiles: pinned host weights, the next block copied while this one runs.

diffsynth's VRAM management (``balanced`` / ``low``) keeps DiT layers on the GPU up to a memory
limit and copies the rest from host memory inside each layer's forward, synchronously and from
pageable memory. :class:`BlockPrefetcher` changes only where the bytes come from and when:

- every host-resident block linear's weight and bias are pinned once (page-locked: DMA at full
  PCIe speed) and kept as the layer's host copy, so offloading a layer after a shot just drops its
  GPU copy instead of copying it back;
- a forward pre-hook on block i starts the copies of block i+1's host-resident linears on a side
  CUDA stream; the layer waits for its copy's event before its matmul.

Which layers stay on the GPU (the profile's limit) is unchanged, so peaks stay what the profile
says plus at most one block in flight (about 0.8 GB for the 14B DiT). CUDA only.
"""

from __future__ import annotations

import torch


def _wrapped_linears(module) -> list:
    from diffsynth.core.vram.layers import AutoWrappedLinear

    return [m for m in module.modules() if isinstance(m, AutoWrappedLinear)]


class BlockPrefetcher:
    """Installs the pinned-memory prefetch on the VRAM-managed DiT ``dit`` (see module doc)."""

    def __init__(self, dit, device):
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)
        self.blocks = [_wrapped_linears(block) for block in dit.blocks]
        self.copies = 0
        for i, (block, linears) in enumerate(zip(dit.blocks, self.blocks)):
            for linear in linears:
                self._pin(linear)
                linear.computation = self._computation_of(linear)
                linear.offload = self._offload_of(linear)
            block.register_forward_pre_hook(self._hook_of(i))

    @staticmethod
    def _pin(linear) -> None:
        pinned = []
        for tensor in (linear.weight, linear.bias):
            if tensor is None:
                pinned.append(None)
                continue
            if tensor.device.type != "cpu":
                tensor.data = tensor.data.to("cpu")
            if not tensor.data.is_pinned():
                tensor.data = tensor.data.pin_memory()
            pinned.append(tensor.data)
        linear._ex4d_host = tuple(pinned)
        linear._ex4d_prefetched = None

    def _offload_of(self, linear):
        def offload():
            weight, bias = linear._ex4d_host
            linear.weight.data = weight  # weights do not change during inference: drop the GPU copy
            if bias is not None:
                linear.bias.data = bias
            linear._ex4d_prefetched = None
            linear.state = 0
        return offload

    def _prefetch(self, index: int) -> None:
        for linear in self.blocks[index]:
            if linear.state == 2 or linear._ex4d_prefetched is not None:
                continue  # already on the GPU, or on its way
            if linear.computation_dtype != linear.weight.dtype:
                continue
            with torch.cuda.stream(self.stream):
                copies = []
                for tensor in linear._ex4d_host:
                    if tensor is None:
                        copies.append(None)
                        continue
                    gpu = torch.empty(tensor.shape, dtype=tensor.dtype, device=self.device)
                    gpu.copy_(tensor, non_blocking=True)
                    copies.append(gpu)
                event = torch.cuda.Event()
                event.record(self.stream)
            linear._ex4d_prefetched = (copies[0], copies[1], event)
            self.copies += 1

    def _hook_of(self, index: int):
        def hook(module, args):
            self._prefetch(index)
            self._prefetch((index + 1) % len(self.blocks))
        return hook

    def _computation_of(self, linear):
        default = type(linear).computation.__get__(linear)

        def computation():
            prefetched = linear._ex4d_prefetched
            if linear.state == 2:  # diffsynth moved it onto the GPU for good (under the profile's limit)
                linear._ex4d_prefetched = None
                return default()
            if prefetched is None:
                return default()
            linear._ex4d_prefetched = None
            weight, bias, event = prefetched
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(event)
            weight.record_stream(stream)  # allocated on the side stream, used and freed on this one
            if bias is not None:
                bias.record_stream(stream)
            return weight, bias
        return computation
