"""``ex4d models check DIR``: is DIR a complete Wan2.1-I2V-14B-480P + EX-4D folder?

Every file is identified the way diffsynth does it (a hash of key names and shapes), and
``ex4d.ckpt`` is checked key by key against the DiT found. Prints what is present, missing or
wrong and the commands that fetch what is missing. ``--convert`` also writes ``.safetensors``
copies of the ``.pth`` encoders (faster to identify and load: measured in docs/PERFORMANCE.md).
Exit code 0 when complete, 4 otherwise.
"""

from __future__ import annotations

import argparse

from ..errors import ResourceError


#: The files each role is found in (diffsynth also accepts the .safetensors twins of the .pth encoders).
EXPECTED_FILES = {
    "dit": "diffusion_pytorch_model-0000N-of-00007.safetensors (7 shards)",
    "text_encoder": "models_t5_umt5-xxl-enc-bf16.pth (or .safetensors)",
    "image_encoder": "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth (or .safetensors)",
    "vae": "Wan2.1_VAE.pth (or .safetensors)",
    "tokenizer": "google/umt5-xxl/ (tokenizer folder)",
    "ex4d_ckpt": "ex4d.ckpt",
}


def add_check_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check a Wan2.1 + EX-4D model folder file by file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="the Wan2.1-I2V-14B-480P folder (or its parent)")
    p.add_argument("--convert", action="store_true", help="write .safetensors copies of the .pth encoders")
    p.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    from ..generation.wan.model_folder import check, convert_pth_to_safetensors, download_commands, wan_folder

    folder = wan_folder(args.dir)
    if args.convert:
        for path in convert_pth_to_safetensors(folder):
            print(f"wrote {path}")
    report = check(folder)
    print(f"model folder: {folder}")
    for item in report:
        where = f" {item.paths[0]}" + (f" (+{len(item.paths) - 1})" if len(item.paths) > 1 else "") if item.paths else ""
        if not item.paths:
            where = f" expected: {EXPECTED_FILES.get(item.name, '?')}"
        print(f"  {item.name:<14} {item.status.upper():<8}{where}")
        if item.detail:
            print(f"  {'':<14} {item.detail}")
    bad = [item.name for item in report if item.status != "ok"]
    if bad:
        print(download_commands(folder))
        raise ResourceError(f"model folder {folder} is not usable: {', '.join(bad)} missing or wrong")
    print("all files present and recognised")
    return 0
