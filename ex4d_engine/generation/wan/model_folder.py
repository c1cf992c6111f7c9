"""The model folder: the official Wan2.1-I2V-14B-480P file names plus ``ex4d.ckpt``.

``DIR/`` (as ``hf download Wan-AI/Wan2.1-I2V-14B-480P --local-dir DIR`` leaves it):
    diffusion_pytorch_model-0000{1..7}-of-00007.safetensors   DiT (any shard count is accepted)
    models_t5_umt5-xxl-enc-bf16.pth                            umT5-XXL text encoder
    models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth    CLIP image encoder
    Wan2.1_VAE.pth                                             VAE
    google/umt5-xxl/                                           tokenizer
    ex4d.ckpt                                                  EX-4D LoRA + camera-video encoder

Each ``.pth`` may be replaced by a ``.safetensors`` of the same stem (``ex4d models check DIR
--convert`` writes them): diffsynth must fully unpickle a ``.pth`` just to identify it.
Identification is diffsynth's: an MD5 over the file's key names and shapes, looked up in
``diffsynth.configs.MODEL_CONFIGS``.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Optional

from ...atomic import atomic_path
from ...depth.weights import download_target, models_dir_note
from ...errors import NotFoundError, ResourceError

WAN_REPO = "Wan-AI/Wan2.1-I2V-14B-480P"
EX4D_REPO = "yihouxiang/EX-4D"

DIT_GLOB = "diffusion_pytorch_model*.safetensors"
T5_STEM = "models_t5_umt5-xxl-enc-bf16"
CLIP_STEM = "models_clip_open-clip-xlm-roberta-large-vit-huge-14"
VAE_STEM = "Wan2.1_VAE"
TOKENIZER_DIR = os.path.join("google", "umt5-xxl")
EX4D_CKPT = "ex4d.ckpt"

#: Component -> diffsynth model name its file must be detected as.
DIFFSYNTH_NAMES = {
    "dit": "wan_video_dit",
    "text_encoder": "wan_video_text_encoder",
    "image_encoder": "wan_video_image_encoder",
    "vae": "wan_video_vae",
}


@dataclass
class ComponentStatus:
    name: str
    status: str  # "ok", "missing", "wrong"
    paths: list = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True)
class ModelFiles:
    """Resolved paths of a complete folder."""

    dit: list
    text_encoder: str
    image_encoder: str
    vae: str
    tokenizer: str
    ex4d_ckpt: str


def _encoder_file(models_dir: str, stem: str) -> Optional[str]:
    for ext in (".safetensors", ".pth"):
        path = os.path.join(models_dir, stem + ext)
        if os.path.isfile(path):
            return path
    return None


MODELS_DIR_ENV = "EX4D_MODELS_DIR"
WAN_FOLDER_NAME = WAN_REPO.split("/")[-1]


def wan_folder(models_dir: Optional[str] = None) -> str:
    """The Wan folder: ``models_dir`` itself when it holds the DiT shards, else
    ``<models_dir>/Wan2.1-I2V-14B-480P`` (the layout ``ex4d models`` uses); ``models_dir`` defaults
    to ``$EX4D_MODELS_DIR``."""
    root = models_dir or os.environ.get(MODELS_DIR_ENV)
    if not root:
        raise NotFoundError(f"no model folder given: pass --models-dir or set ${MODELS_DIR_ENV}.\n"
                            + download_commands(download_target(WAN_FOLDER_NAME)) + "\n" + models_dir_note())
    if glob.glob(os.path.join(root, DIT_GLOB)) or not os.path.isdir(os.path.join(root, WAN_FOLDER_NAME)):
        return root
    return os.path.join(root, WAN_FOLDER_NAME)


def locate(models_dir: str) -> dict:
    """Component -> path(s) or None; no file is opened."""
    dit = sorted(glob.glob(os.path.join(models_dir, DIT_GLOB)))
    tokenizer = os.path.join(models_dir, TOKENIZER_DIR)
    ckpt = os.path.join(models_dir, EX4D_CKPT)
    return {
        "dit": dit or None,
        "text_encoder": _encoder_file(models_dir, T5_STEM),
        "image_encoder": _encoder_file(models_dir, CLIP_STEM),
        "vae": _encoder_file(models_dir, VAE_STEM),
        "tokenizer": tokenizer if os.path.isdir(tokenizer) and os.listdir(tokenizer) else None,
        "ex4d_ckpt": ckpt if os.path.isfile(ckpt) else None,
    }


def resolve(models_dir: str) -> ModelFiles:
    """Paths of every component, or NotFoundError listing what is missing and how to get it."""
    if not os.path.isdir(models_dir):
        raise NotFoundError(f"model folder {models_dir} does not exist.\n{download_commands(models_dir)}")
    found = locate(models_dir)
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise NotFoundError(f"model folder {models_dir} lacks: {', '.join(missing)}.\n{download_commands(models_dir)}")
    return ModelFiles(**found)


def download_commands(models_dir: str) -> str:
    """What a user with internet runs to fill ``models_dir``."""
    return "\n".join([
        "To get the weights (about 75 GB), on a machine with internet:",
        '  pip install -U "huggingface_hub[cli]"',
        f"  hf download {WAN_REPO} --local-dir {models_dir}",
        f"  hf download {EX4D_REPO} {EX4D_CKPT} --local-dir {models_dir}",
        f"  ex4d models check {models_dir} --convert   # optional: .pth -> .safetensors, faster loading",
        "(older huggingface_hub: 'huggingface-cli download' instead of 'hf download')",
    ])


def _detect(paths) -> tuple[Optional[str], Optional[dict], str]:
    """(diffsynth model name, its extra_kwargs, hash) for a file or shard list; name None if unknown."""
    from .adapter import detect_model

    return detect_model(paths)


def check(models_dir: str, inspect_checkpoint: bool = True) -> list[ComponentStatus]:
    """Status of every component. Opens each file (safetensors: headers only; .pth: full unpickle)."""
    found = locate(models_dir) if os.path.isdir(models_dir) else {k: None for k in
                                                                   ("dit", "text_encoder", "image_encoder", "vae", "tokenizer", "ex4d_ckpt")}
    report = []
    dit_config = None
    for name, model_name in DIFFSYNTH_NAMES.items():
        path = found[name]
        if path is None:
            report.append(ComponentStatus(name, "missing"))
            continue
        paths = path if isinstance(path, list) else [path]
        try:
            detected, config, digest = _detect(path)
        except Exception as exc:  # unreadable file: report, keep checking the others
            report.append(ComponentStatus(name, "wrong", paths, f"unreadable: {type(exc).__name__}: {exc}"))
            continue
        if detected != model_name:
            report.append(ComponentStatus(name, "wrong", paths, f"detected as {detected or 'unknown model'} (hash {digest})"))
        elif name == "dit" and not (config or {}).get("has_image_input") or name == "dit" and (config or {}).get("in_dim") != 36:
            report.append(ComponentStatus(name, "wrong", paths, f"a Wan DiT but not an image-to-video one (hash {digest}, {config})"))
        else:
            if name == "dit":
                dit_config = config
            report.append(ComponentStatus(name, "ok", paths, f"hash {digest}"))
    tok = found["tokenizer"]
    report.append(ComponentStatus("tokenizer", "ok" if tok else "missing", [tok] if tok else []))
    ckpt = found["ex4d_ckpt"]
    if ckpt is None:
        report.append(ComponentStatus("ex4d_ckpt", "missing"))
    elif not inspect_checkpoint or dit_config is None:
        report.append(ComponentStatus("ex4d_ckpt", "ok", [ckpt], "present (not checked against a DiT)"))
    else:
        from .checkpoint import load_ex4d_checkpoint
        from .adapter import dit_target_shapes

        try:
            shapes, dim = dit_target_shapes(dit_config)
            loaded = load_ex4d_checkpoint(ckpt, shapes, dim)
            report.append(ComponentStatus("ex4d_ckpt", "ok", [ckpt], loaded.summary()))
        except (ResourceError, NotFoundError) as exc:
            report.append(ComponentStatus("ex4d_ckpt", "wrong", [ckpt], exc.message))
    return report


def convert_pth_to_safetensors(models_dir: str) -> list[str]:
    """Write ``<stem>.safetensors`` next to each encoder ``.pth`` (same keys and dtypes). Returns
    the files written. Written under a temporary name and renamed, so a crash leaves no half file."""
    import torch
    from safetensors.torch import save_file

    written = []
    for stem in (T5_STEM, CLIP_STEM, VAE_STEM):
        src = os.path.join(models_dir, stem + ".pth")
        dst = os.path.join(models_dir, stem + ".safetensors")
        if not os.path.isfile(src) or os.path.isfile(dst):
            continue
        state = torch.load(src, map_location="cpu", weights_only=True, mmap=True)
        state = {k: v.contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
        with atomic_path(dst) as tmp:
            save_file(state, str(tmp))
        written.append(dst)
    return written


@dataclass(frozen=True)
class Need:
    """One file of the folder, for ``ex4d models`` (no file is opened)."""

    name: str
    found: bool
    location: str
    licence: str
    get_command: str
    problem: Optional[str] = None


LICENCE = "Apache-2.0 (Wan2.1 weights: Wan2.1 README; EX-4D: its repository's LICENSE)"


def list_needs(models_dir: Optional[str]) -> tuple[str, list[Need]]:
    """(folder, what it needs) for ``ex4d models list``; cheap: file presence only."""
    try:
        folder = wan_folder(models_dir)
    except NotFoundError:
        folder = download_target(WAN_FOLDER_NAME)
    found = locate(folder) if os.path.isdir(folder) else {}
    wan_cmd = f"hf download {WAN_REPO} --local-dir {folder}"
    rows = [("dit (7 shards)", "dit", wan_cmd), ("umT5-XXL text encoder", "text_encoder", wan_cmd),
            ("CLIP image encoder", "image_encoder", wan_cmd), ("VAE", "vae", wan_cmd),
            ("tokenizer google/umt5-xxl", "tokenizer", wan_cmd),
            ("ex4d.ckpt (LoRA + camera encoder)", "ex4d_ckpt", f"hf download {EX4D_REPO} {EX4D_CKPT} --local-dir {folder}")]
    needs = []
    for label, key, cmd in rows:
        path = found.get(key)
        where = (path[0] if isinstance(path, list) else path) if path else folder
        needs.append(Need(label, bool(path), where, "Apache-2.0", cmd))
    return folder, needs


def models_status(models_dir: Optional[str]) -> dict:
    """{"present", "missing": component names, "get": the commands fetching what is missing} (no file opened)."""
    _, needs = list_needs(models_dir)
    missing = [n for n in needs if not n.found]
    return {"present": [n.name for n in needs if n.found], "missing": [n.name for n in missing],
            "get": list(dict.fromkeys(n.get_command for n in missing))}
