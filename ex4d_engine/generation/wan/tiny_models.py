"""Tiny random Wan2.1-I2V models in the official file layout, plus a tiny ``ex4d.ckpt``.

For tests and smoke runs without the 75 GB of weights: the real loading code (diffsynth's
hash detection, state-dict converters, our checkpoint check, LoRA fusing) runs unchanged on
them. diffsynth identifies models by a hash of key names and shapes, so the tiny shapes are
registered in ``diffsynth.configs.MODEL_CONFIGS`` by :func:`register_tiny_models` -- the
documented extension point. The VAE and CLIP classes below exist only because diffsynth's
constructors cannot express tiny sizes.
"""

from __future__ import annotations

import os

import torch

from .camera_encoder import LATENT_CHANNELS, CamVidEncoder
from .lora import lora_keys, target_linears
from .model_folder import CLIP_STEM, EX4D_CKPT, T5_STEM, TOKENIZER_DIR, VAE_STEM

#: 2 blocks, width 64, 2 heads (head dim 32 splits into RoPE parts 12/10/10).
TINY_DIT = dict(has_image_input=True, patch_size=[1, 2, 2], in_dim=36, dim=64, ffn_dim=128, freq_dim=256,
                text_dim=32, out_dim=16, num_heads=2, num_layers=2, eps=1e-6)
TINY_T5 = dict(vocab=64, dim=32, dim_attn=32, dim_ffn=64, num_heads=2, num_layers=1, num_buckets=32, dropout=0.0)
TINY_ENCODER_HIDDEN = 32
TINY_LORA_RANK = 16
#: SamplerSettings for the tiny models (a gang started with ``tiny``): 5-frame windows, 2 steps, 64x64 area.
TINY_SAMPLER = dict(window=5, overlap=2, steps=2, area=64 * 64)
TOKENIZER_WORDS = ["4K", "ultra", "HD,", "realistic", "cinematic", "quality", "static", "blurred", "a", "cat"]


def _ensure():
    from .adapter import ensure_diffsynth

    ensure_diffsynth()


class TinyWanVideoVAE(torch.nn.Module):
    """WanVideoVAE with an 8-wide inner network (z_dim stays 16: the DiT needs 16+4+16 channels)."""

    def __new__(cls, *args, **kwargs):
        _ensure()
        from diffsynth.models.wan_video_vae import VideoVAE_, WanVideoVAE

        vae = WanVideoVAE.__new__(WanVideoVAE)
        torch.nn.Module.__init__(vae)
        mean = torch.zeros(16)
        std = torch.ones(16)
        vae.mean, vae.std = mean, std
        vae.scale = [mean, 1.0 / std]
        vae.model = VideoVAE_(dim=8, z_dim=16).eval().requires_grad_(False)
        vae.upsampling_factor = 8
        vae.z_dim = 16
        return vae


class TinyWanImageEncoder(torch.nn.Module):
    """WanImageEncoder with 2 vision layers (width 1280, 224 px and 257 tokens are fixed by the DiT)."""

    def __new__(cls, *args, **kwargs):
        _ensure()
        from diffsynth.models.wan_video_image_encoder import WanImageEncoder, clip_xlm_roberta_vit_h_14

        enc = WanImageEncoder.__new__(WanImageEncoder)
        torch.nn.Module.__init__(enc)
        enc.model, enc.transforms = clip_xlm_roberta_vit_h_14(
            pretrained=False, return_transforms=True, return_tokenizer=False, dtype=torch.float32,
            device="cpu", vision_layers=2, text_layers=1, vocab_size=16)
        return enc


def _save_tokenizer(path: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for word in TOKENIZER_WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>").save_pretrained(path)


def write_tiny_model_folder(models_dir: str, seed: int = 0, encoder_scale: float = 0.02,
                            turbo_lora: bool = True) -> None:
    """Write all files of a tiny model folder under ``models_dir`` (official names and layouts).

    The camera encoder's last conv gets random (non-zero) weights of std ``encoder_scale``, so the
    adapter visibly changes the output; the LoRA B matrices are random too. ``turbo_lora``: also
    the 4-step distill LoRA in its released key layout (:func:`.distill_lora.tiny_distill_lora`).
    """
    _ensure()
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder
    from safetensors.torch import save_file

    os.makedirs(models_dir, exist_ok=True)
    torch.manual_seed(seed)
    dit = WanModel(**TINY_DIT)
    state = {k: v.contiguous() for k, v in dit.state_dict().items()}
    keys = sorted(state)
    half = len(keys) // 2
    for i, part in enumerate((keys[:half], keys[half:]), start=1):
        save_file({k: state[k] for k in part}, os.path.join(models_dir, f"diffusion_pytorch_model-0000{i}-of-00002.safetensors"))
    torch.save(WanTextEncoder(**TINY_T5).state_dict(), os.path.join(models_dir, T5_STEM + ".pth"))
    vae = TinyWanVideoVAE()
    torch.save({k[len("model."):]: v for k, v in vae.state_dict().items()}, os.path.join(models_dir, VAE_STEM + ".pth"))
    clip = TinyWanImageEncoder()
    torch.save({k[len("model."):]: v.to(torch.bfloat16) for k, v in clip.state_dict().items()},
               os.path.join(models_dir, CLIP_STEM + ".pth"))
    _save_tokenizer(os.path.join(models_dir, TOKENIZER_DIR))
    torch.save(tiny_checkpoint(dit, encoder_scale), os.path.join(models_dir, EX4D_CKPT))
    if turbo_lora:
        from .distill_lora import tiny_distill_lora
        from .speed import TURBO_LORA_FILE

        save_file(tiny_distill_lora(dit, seed=seed), os.path.join(models_dir, TURBO_LORA_FILE))


def tiny_checkpoint(dit, encoder_scale: float = 0.02, lora_scale: float = 0.05,
                    hidden: int = TINY_ENCODER_HIDDEN) -> dict:
    """A state dict in the exact ``ex4d.ckpt`` key layout for ``dit``: rank-16 LoRA on every target
    plus a camera encoder whose output conv is non-zero."""
    ckpt = {}
    for name, linear in target_linears(dit).items():
        key_a, key_b = lora_keys(name)
        ckpt[key_a] = torch.randn(TINY_LORA_RANK, linear.in_features) / linear.in_features ** 0.5
        ckpt[key_b] = torch.randn(linear.out_features, TINY_LORA_RANK) * lora_scale
    encoder = CamVidEncoder(LATENT_CHANNELS, hidden, dit.dim)
    torch.nn.init.normal_(encoder.latent_patch_embedding.weight, std=encoder_scale)
    ckpt.update(encoder.state_dict())
    return ckpt


def randomise(module) -> None:
    """Random weights a full-size benchmark can run on: fan-in scaled normal weights, unit norms, small
    biases (activations stay finite through 40 blocks). Used by bench/ on full-size models."""
    import torch

    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, p[0].numel() ** -0.5)
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)


def register_tiny_models(models_dir: str) -> None:
    """Add the tiny files' hashes to diffsynth's MODEL_CONFIGS (idempotent)."""
    _ensure()
    import glob

    from diffsynth.configs import MODEL_CONFIGS
    from diffsynth.core.loader.file import hash_model_file

    here = __name__
    entries = [
        (sorted(glob.glob(os.path.join(models_dir, "diffusion_pytorch_model*.safetensors"))), dict(
            model_name="wan_video_dit", model_class="diffsynth.models.wan_video_dit.WanModel", extra_kwargs=TINY_DIT)),
        (os.path.join(models_dir, T5_STEM + ".pth"), dict(
            model_name="wan_video_text_encoder", model_class="diffsynth.models.wan_video_text_encoder.WanTextEncoder",
            extra_kwargs=TINY_T5)),
        (os.path.join(models_dir, VAE_STEM + ".pth"), dict(
            model_name="wan_video_vae", model_class=f"{here}.TinyWanVideoVAE",
            state_dict_converter="diffsynth.utils.state_dict_converters.wan_video_vae.WanVideoVAEStateDictConverter")),
        (os.path.join(models_dir, CLIP_STEM + ".pth"), dict(
            model_name="wan_video_image_encoder", model_class=f"{here}.TinyWanImageEncoder",
            state_dict_converter="diffsynth.utils.state_dict_converters.wan_video_image_encoder.WanImageEncoderStateDictConverter")),
    ]
    known = {c["model_hash"] for c in MODEL_CONFIGS}
    for path, config in entries:
        digest = hash_model_file(path)
        if digest not in known:
            MODEL_CONFIGS.append(dict(model_hash=digest, **config))
