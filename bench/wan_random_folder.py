"""A full-size Wan2.1-I2V-14B + EX-4D model folder with random weights, for GPU benchmarks of the server path.

The folder has the official file names and exact key names and shapes: diffsynth identifies each file
by an MD5 over its keys and shapes, so the real loading code runs unchanged. Nothing is downloaded.
Speed and memory only: the weights are random, and the pictures are noise.

* DiT (14B): random bf16, built on the GPU and written in 5 GB safetensors shards.
* umT5-XXL: random bf16. VAE: diffsynth's default init.
* CLIP: the vision tower is random. The text tower is zeros: the loader drops it, but the official file
  has it, and its keys are part of the hash.
* Each encoder is written as ``.safetensors``, which model_folder accepts in place of ``.pth``.
* Tokenizer: the tiny word-level tokenizer of ``tiny_models``.
* ``ex4d.ckpt``: rank-16 LoRA on every target, plus a camera encoder of width 1024, as released.
* The ``turbo`` preset's 4-step distill LoRA (rank 64), where the engine has speed presets.

About 42 GB; a few minutes on a GPU host.

    python bench/wan_random_folder.py /tmp/wan-random          # then --models-dir /tmp/wan-random
    python bench/wan_random_folder.py --check                  # CPU: the hashes only (meta tensors)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402

from ex4d_engine.generation.wan.tiny_models import randomise  # noqa: E402

from ex4d_engine.generation.wan.model_folder import CLIP_STEM, EX4D_CKPT, T5_STEM, TOKENIZER_DIR, VAE_STEM  # noqa: E402

I2V_14B = dict(has_image_input=True, patch_size=[1, 2, 2], in_dim=36, dim=5120, ffn_dim=13824, freq_dim=256,
               text_dim=4096, out_dim=16, num_heads=40, num_layers=40, eps=1e-6)
#: The official files' hashes in diffsynth's MODEL_CONFIGS (a file that hashes otherwise is not recognised).
OFFICIAL_HASHES = {"dit": "6bfcfb3b342cb286ce886889d519a77e", "t5": "9c8818c2cbea55eca56c7b447df170da",
                   "clip": "5941c53e207d62f20f9025686193c40b", "vae": "ccc42284ea13e1ad04693284c7a09be6"}
SHARD_BYTES = 5 << 30


def clip_text_tower_shapes(dim: int = 1024, layers: int = 24, vocab: int = 250002, seq: int = 514) -> dict:
    """Key -> shape of the official CLIP file's XLM-RoBERTa-large text tower (+ its 2-layer head)."""
    shapes = {"token_embedding.weight": (vocab, dim), "type_embedding.weight": (1, dim),
              "pos_embedding.weight": (seq, dim), "norm.weight": (dim,), "norm.bias": (dim,),
              "head.0.weight": ((dim + 1024) // 2, dim), "head.2.weight": (1024, (dim + 1024) // 2)}
    for i in range(layers):
        block = f"blocks.{i}."
        for name in "qkvo":
            shapes[f"{block}attn.{name}.weight"], shapes[f"{block}attn.{name}.bias"] = (dim, dim), (dim,)
        for norm in ("norm1", "norm2"):
            shapes[f"{block}{norm}.weight"], shapes[f"{block}{norm}.bias"] = (dim,), (dim,)
        shapes.update({f"{block}ffn.0.weight": (4 * dim, dim), f"{block}ffn.0.bias": (4 * dim,),
                       f"{block}ffn.2.weight": (dim, 4 * dim), f"{block}ffn.2.bias": (dim,)})
    return shapes




def build(cls, device: str, dtype=torch.bfloat16, **kwargs) -> torch.nn.Module:
    """Straight into uninitialised memory on ``device``, then random (meta: shapes only)."""
    from diffsynth.core.vram.initialization import skip_model_initialization

    with skip_model_initialization():
        model = cls(**kwargs)
    if device == "meta":
        return model.to("meta")
    model = model.to(dtype=dtype).to_empty(device=device)
    randomise(model)
    return model.eval().requires_grad_(False)


def state_dicts(device: str) -> dict[str, dict[str, torch.Tensor]]:
    """Component -> the state dict as the official file holds it (keys and shapes)."""
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.models.wan_video_image_encoder import WanImageEncoder
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder
    from diffsynth.models.wan_video_vae import WanVideoVAE

    make = (lambda shape: torch.empty(shape, device="meta")) if device == "meta" else \
        (lambda shape: torch.zeros(shape, dtype=torch.bfloat16))
    clip = build(WanImageEncoder, device)
    clip_state = {k[len("model."):]: v for k, v in clip.state_dict().items()}
    clip_state.update({"textual." + k: make(shape) for k, shape in clip_text_tower_shapes().items()})
    vae = WanVideoVAE().eval() if device != "meta" else build(WanVideoVAE, "meta")
    return {
        "dit": build(WanModel, device, **I2V_14B).state_dict(),
        "t5": build(WanTextEncoder, device).state_dict(),
        "clip": clip_state,
        "vae": {k[len("model."):]: v for k, v in vae.state_dict().items()},
    }


def check_hashes(states: dict) -> None:
    from diffsynth.core.loader.file import hash_state_dict_keys

    for name, state in states.items():
        digest = hash_state_dict_keys(state)
        if digest != OFFICIAL_HASHES[name]:
            raise SystemExit(f"{name}: hash {digest} is not the official {OFFICIAL_HASHES[name]}")
        print(f"{name}: {len(state)} tensors, hash {digest} = official", flush=True)


def save_sharded(state: dict, folder: str) -> None:
    from safetensors.torch import save_file

    shards, current, size = [], {}, 0
    for key in sorted(state):
        tensor = state[key]
        if current and size + tensor.numel() * tensor.element_size() > SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[key] = tensor
        size += tensor.numel() * tensor.element_size()
    shards.append(current)
    for i, shard in enumerate(shards, start=1):
        name = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file({k: v.detach().to("cpu").contiguous() for k, v in shard.items()}, os.path.join(folder, name))


def write_folder(folder: str, device: str) -> None:
    from safetensors.torch import save_file

    from ex4d_engine.generation.wan.adapter import ensure_diffsynth
    from ex4d_engine.generation.wan.tiny_models import _save_tokenizer, tiny_checkpoint

    ensure_diffsynth()
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(0)
    started = time.perf_counter()
    states = state_dicts(device)
    check_hashes(states)
    save_sharded(states["dit"], folder)
    for name, stem in (("t5", T5_STEM), ("clip", CLIP_STEM), ("vae", VAE_STEM)):
        save_file({k: v.detach().to("cpu").contiguous() for k, v in states[name].items()},
                  os.path.join(folder, stem + ".safetensors"))
    _save_tokenizer(os.path.join(folder, TOKENIZER_DIR))

    from diffsynth.models.wan_video_dit import WanModel

    with torch.device("meta"):
        dit_shapes = WanModel(**I2V_14B)  # the LoRA targets' shapes; the weights are not needed
    torch.save(tiny_checkpoint(dit_shapes, encoder_scale=0.02, hidden=1024), os.path.join(folder, EX4D_CKPT))
    write_turbo_lora(dit_shapes, folder)
    total = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder) for f in files)
    print(f"wrote {folder}: {total / 2**30:.1f} GiB in {time.perf_counter() - started:.0f} s", flush=True)


def write_turbo_lora(dit_shapes: torch.nn.Module, folder: str) -> None:
    """The 4-step distill LoRA of the ``turbo`` speed preset (rank 64, the release's key layout), where the
    engine has that preset."""
    try:
        from ex4d_engine.generation.wan.distill_lora import tiny_distill_lora
        from ex4d_engine.generation.wan.speed import TURBO_LORA_FILE
    except ImportError:
        print("no speed presets in this engine: no turbo LoRA written", flush=True)
        return
    from safetensors.torch import save_file

    save_file(tiny_distill_lora(dit_shapes, rank=64), os.path.join(folder, TURBO_LORA_FILE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--check", action="store_true", help="only check the hashes on meta tensors (CPU, seconds)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.check:
        from ex4d_engine.generation.wan.adapter import ensure_diffsynth

        ensure_diffsynth()
        check_hashes(state_dicts("meta"))
        return
    if not args.folder:
        parser.error("give the folder to write (or --check)")
    write_folder(args.folder, args.device)


if __name__ == "__main__":
    main()
