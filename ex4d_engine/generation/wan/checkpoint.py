"""``ex4d.ckpt``: one flat torch-pickled dict of tensors (ex4d_method.md §7.8).

- LoRA, DiT-relative: ``blocks.{i}.{self_attn,cross_attn}.{q,k,v,o}.lora_{A,B}.default.weight``
  and ``blocks.{i}.ffn.{0,2}.lora_{A,B}.default.weight``; A is (rank, in), B is (out, rank).
- Camera-video encoder: ``latent_encoder.{0,2,4}.{weight,bias}``, ``latent_patch_embedding.{weight,bias}``.

:func:`load_ex4d_checkpoint` loads like the original (``load_state_dict(strict=False)`` into the
LoRA'd DiT, then into the camera encoder): every key that names a DiT parameter (e.g. trained
non-LoRA weights) is applied, keys that match nothing are ignored and counted as unexpected, and a
LoRA layer with neither A nor B stays unadapted and is counted as missing. It refuses, before
changing anything, only what cannot be placed: a shape that does not fit, half a LoRA pair, a
camera encoder that is incomplete, non-finite values.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from dataclasses import dataclass

import torch

from ...errors import NotFoundError, ResourceError
from .camera_encoder import LATENT_CHANNELS, CamVidEncoder
from .lora import lora_keys

ENCODER_PREFIXES = ("latent_encoder.", "latent_patch_embedding.")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ex4dCheckpoint:
    """A validated checkpoint.

    Attributes:
        lora: LoRA tensors keyed as in the file.
        encoder: camera-encoder tensors keyed without prefix changes (``latent_encoder.0.weight``...).
        rank: LoRA rank read from the file (16 for the release).
        hidden_channels: camera-encoder width read from the file (1024 for the release).
        loaded, missing, unexpected: key counts against what the DiT expects (``loaded`` includes
            ``dit_params``).
        dit_params: tensors named like DiT parameters, applied to the DiT (see module doc).
    """

    lora: dict
    encoder: dict
    rank: int
    hidden_channels: int
    loaded: int
    missing: int
    unexpected: int
    dit_params: dict = None

    def summary(self) -> str:
        extra = f"; DiT weights: {len(self.dit_params)} tensors" if self.dit_params else ""
        return (f"ex4d.ckpt: {self.loaded} tensors loaded, {self.missing} missing, {self.unexpected} unexpected "
                f"(LoRA rank {self.rank}: {len(self.lora) // 2} layers; camera encoder: {len(self.encoder)} tensors"
                f"{extra})")


def read_state_dict(path: str) -> dict:
    """torch.load with weights_only; any failure becomes a ResourceError naming the file."""
    if not os.path.isfile(path):
        raise NotFoundError(f"EX-4D checkpoint not found: {path}")
    errors = (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except errors as exc:
        if zipfile.is_zipfile(path):  # a zip checkpoint that mmap cannot read is broken, not old
            raise ResourceError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc}); "
                                "download ex4d.ckpt again") from exc
        log.warning("%s is not a zip-format torch file, so it cannot be memory-mapped; reading it whole", path)
        state = _load_unmapped(path, errors)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ResourceError(f"{path} is not a flat dict of tensors, so it is not an EX-4D checkpoint")
    return state


def _load_unmapped(path: str, errors) -> dict:
    """torch.load without mmap (old pre-zip pickles, which the original loaded too)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except errors as exc:
        raise ResourceError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc}); "
                            "download ex4d.ckpt again") from exc


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


def load_ex4d_checkpoint(path: str, linear_shapes: dict[str, tuple[int, int]], dit_dim: int,
                         dit=None) -> Ex4dCheckpoint:
    """Read ``path`` and check it against the loaded DiT (see module doc for what is applied,
    ignored or refused).

    Args:
        linear_shapes: clean target name -> (out_features, in_features), from :func:`.lora.target_linears`.
        dit_dim: the DiT width (the encoder's output channels).
        dit: the loaded DiT; when given, keys naming its parameters are applied to it (after every
            check passed). Without it such keys count as unexpected.

    Raises:
        NotFoundError: no file. ResourceError: unreadable, or tensors that cannot be placed.
    """
    from .lora import _clean_name

    state = read_state_dict(path)
    a_keys = [k for k in state if k.endswith(".lora_A.default.weight")]
    if not a_keys or "latent_encoder.0.weight" not in state:
        raise ResourceError(f"{path} holds no EX-4D LoRA or camera-encoder tensors "
                            f"({len(state)} keys, e.g. {sorted(state)[:3]}); it is not ex4d.ckpt")
    rank = int(state[a_keys[0]].shape[0])
    hidden = int(state["latent_encoder.0.weight"].shape[0])
    want = expected_shapes(linear_shapes, rank, dit_dim, hidden)
    params = {}
    if dit is not None:
        for name, param in dit.named_parameters():
            params.setdefault(_clean_name(name), param)
    dit_keys = sorted(k for k in state if k not in want and k in params)
    unexpected = sorted(k for k in state if k not in want and k not in params)
    missing = sorted(k for k in want if k not in state)
    problems = [f"{k} is {tuple(state[k].shape)}, expected {want[k]}" for k in sorted(want)
                if k in state and tuple(state[k].shape) != want[k]]
    problems += [f"{k} is {tuple(state[k].shape)}, the DiT parameter is {tuple(params[k].shape)}" for k in dit_keys
                 if state[k].shape != params[k].shape]
    half_pairs = sorted({k.rsplit(".lora_", 1)[0] for k in missing if ".lora_" in k}
                        & {k.rsplit(".lora_", 1)[0] for k in state if ".lora_" in k})
    problems += [f"{name} has only one of lora_A / lora_B" for name in half_pairs]
    missing_encoder = [k for k in missing if k.startswith(ENCODER_PREFIXES)]
    if missing_encoder:
        problems.append(f"camera encoder incomplete: missing {missing_encoder[:2]}")
    loaded = len(want) - len(missing) + len(dit_keys)
    if problems:
        raise ResourceError(
            f"{path} does not fit this Wan DiT: {len(problems)} tensor(s) cannot be placed ({'; '.join(problems[:3])}). "
            f"{loaded} tensors would load, {len(missing)} missing, {len(unexpected)} unexpected. "
            "Use the released ex4d.ckpt with Wan2.1-I2V-14B-480P")
    for k in [k for k in want if k in state] + dit_keys:
        if not torch.isfinite(state[k]).all():
            raise ResourceError(f"{path}: tensor {k} holds NaN or infinite values; the file is corrupted")
    if missing:
        log.warning("%s: %d LoRA tensors missing (%s...); those layers stay unadapted, as the original's "
                    "strict=False load left them", path, len(missing), missing[0])
    if unexpected:
        log.warning("%s: %d keys match nothing in this DiT and are ignored (e.g. %s)", path, len(unexpected),
                    unexpected[0])
    dit_params = {k: state[k] for k in dit_keys}
    with torch.no_grad():
        for k, value in dit_params.items():
            params[k].data.copy_(value.to(device=params[k].device, dtype=params[k].dtype))
    lora = {k: v for k, v in state.items() if ".lora_" in k and k in want}
    encoder = {k: v for k, v in state.items() if k.startswith(ENCODER_PREFIXES)}
    return Ex4dCheckpoint(lora=lora, encoder=encoder, rank=rank, hidden_channels=hidden, loaded=loaded,
                          missing=len(missing), unexpected=len(unexpected), dit_params=dit_params)


def build_camera_encoder(checkpoint: Ex4dCheckpoint, dit_dim: int, device, dtype) -> CamVidEncoder:
    encoder = CamVidEncoder(LATENT_CHANNELS, checkpoint.hidden_channels, dit_dim)
    encoder.load_state_dict(checkpoint.encoder, strict=True)
    return encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
