"""``ex4d.ckpt``: one flat torch-pickled dict of tensors (ex4d_method.md §7.8).

- LoRA, DiT-relative: ``blocks.{i}.{self_attn,cross_attn}.{q,k,v,o}.lora_{A,B}.default.weight``
  and ``blocks.{i}.ffn.{0,2}.lora_{A,B}.default.weight``; A is (rank, in), B is (out, rank).
- Camera-video encoder: ``latent_encoder.{0,2,4}.{weight,bias}``, ``latent_patch_embedding.{weight,bias}``.

:func:`load_ex4d_checkpoint` checks every key and shape against the DiT actually loaded and
refuses a file that does not match, naming what is wrong; it never applies half a checkpoint.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass

import torch

from ...errors import NotFoundError, ResourceError
from .camera_encoder import LATENT_CHANNELS, CamVidEncoder
from .lora import lora_keys

ENCODER_PREFIXES = ("latent_encoder.", "latent_patch_embedding.")


@dataclass(frozen=True)
class Ex4dCheckpoint:
    """A validated checkpoint.

    Attributes:
        lora: LoRA tensors keyed as in the file.
        encoder: camera-encoder tensors keyed without prefix changes (``latent_encoder.0.weight``...).
        rank: LoRA rank read from the file (16 for the release).
        hidden_channels: camera-encoder width read from the file (1024 for the release).
        loaded, missing, unexpected: key counts against what the DiT expects.
    """

    lora: dict
    encoder: dict
    rank: int
    hidden_channels: int
    loaded: int
    missing: int
    unexpected: int

    def summary(self) -> str:
        return (f"ex4d.ckpt: {self.loaded} tensors loaded, {self.missing} missing, {self.unexpected} unexpected "
                f"(LoRA rank {self.rank}: {len(self.lora) // 2} layers; camera encoder: {len(self.encoder)} tensors)")


def read_state_dict(path: str) -> dict:
    """torch.load with weights_only; any failure becomes a ResourceError naming the file."""
    if not os.path.isfile(path):
        raise NotFoundError(f"EX-4D checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise ResourceError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc}); "
                            "download ex4d.ckpt again") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ResourceError(f"{path} is not a flat dict of tensors, so it is not an EX-4D checkpoint")
    return state


def expected_shapes(linear_shapes: dict[str, tuple[int, int]], rank: int, dit_dim: int, hidden: int) -> dict:
    """Key -> shape the file must hold, for a DiT whose targets have (out, in) ``linear_shapes``."""
    shapes = {}
    for name, (out_features, in_features) in linear_shapes.items():
        key_a, key_b = lora_keys(name)
        shapes[key_a] = (rank, in_features)
        shapes[key_b] = (out_features, rank)
    encoder = CamVidEncoder(LATENT_CHANNELS, hidden, dit_dim).to("meta")
    shapes.update({k: tuple(v.shape) for k, v in encoder.state_dict().items()})
    return shapes


def load_ex4d_checkpoint(path: str, linear_shapes: dict[str, tuple[int, int]], dit_dim: int) -> Ex4dCheckpoint:
    """Read and validate ``path`` against the loaded DiT.

    Args:
        linear_shapes: clean target name -> (out_features, in_features), from :func:`.lora.target_linears`.
        dit_dim: the DiT width (the encoder's output channels).

    Raises:
        NotFoundError: no file. ResourceError: unreadable, or keys/shapes that do not match.
    """
    state = read_state_dict(path)
    a_keys = [k for k in state if k.endswith(".lora_A.default.weight")]
    if not a_keys or "latent_encoder.0.weight" not in state:
        raise ResourceError(f"{path} holds no EX-4D LoRA or camera-encoder tensors "
                            f"({len(state)} keys, e.g. {sorted(state)[:3]}); it is not ex4d.ckpt")
    rank = int(state[a_keys[0]].shape[0])
    hidden = int(state["latent_encoder.0.weight"].shape[0])
    want = expected_shapes(linear_shapes, rank, dit_dim, hidden)
    missing = sorted(k for k in want if k not in state)
    unexpected = sorted(k for k in state if k not in want)
    wrong = sorted(k for k in want if k in state and tuple(state[k].shape) != want[k])
    loaded = len(want) - len(missing) - len(wrong)
    if missing or unexpected or wrong:
        examples = [f"missing {missing[:2]}" if missing else "", f"unexpected {unexpected[:2]}" if unexpected else ""]
        if wrong:
            examples.append(f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {want[wrong[0]]}")
        raise ResourceError(
            f"{path} does not match this Wan DiT: {loaded} tensors loaded, {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} with the wrong shape ("
            + "; ".join(e for e in examples if e) + "). Use the released ex4d.ckpt with Wan2.1-I2V-14B-480P")
    for k in want:
        if not torch.isfinite(state[k]).all():
            raise ResourceError(f"{path}: tensor {k} holds NaN or infinite values; the file is corrupted")
    lora = {k: v for k, v in state.items() if ".lora_" in k}
    encoder = {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIXES)}
    return Ex4dCheckpoint(lora=lora, encoder=encoder, rank=rank, hidden_channels=hidden,
                          loaded=loaded, missing=0, unexpected=0)


def build_camera_encoder(checkpoint: Ex4dCheckpoint, dit_dim: int, device, dtype) -> CamVidEncoder:
    encoder = CamVidEncoder(LATENT_CHANNELS, checkpoint.hidden_channels, dit_dim)
    encoder.load_state_dict(checkpoint.encoder, strict=True)
    return encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
