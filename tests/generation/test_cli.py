"""``ex4d generate``, ``ex4d run`` and ``ex4d models check`` in-process, on real video files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from ex4d_testing import gradient_shot

from ex4d_engine.cli import main
from ex4d_engine.video_io import probe, read_video, write_mask_video, write_video


@pytest.fixture
def render_videos(tmp_path):
    """A 9-frame 64x48 colour render at 24 fps and its lossless mask (right quarter hidden after frame 0)."""
    colour, mask = gradient_shot(9, 48, 64, hidden_from_x=48)
    colour_path, mask_path = tmp_path / "color_180.mp4", tmp_path / "mask_180.mp4"
    write_video(colour_path, colour, 24.0, crf=0)
    write_mask_video(mask_path, mask, 24.0)
    return str(colour_path), str(mask_path)


def test_generate_with_tiny_wan_models(tiny_models_dir, render_videos, tmp_path, capsys):
    out = tmp_path / "out" / "output.mp4"
    rc = main(["generate", "--color_video", render_videos[0], "--mask_video", render_videos[1],
               "--output_video", str(out), "--models_dir", tiny_models_dir, "--device", "cpu",
               "--steps", "2", "--area", "4096", "--frames", "0", "--seed", "1"])
    assert rc == 0
    info = probe(out)
    assert (info.num_frames, info.width, info.height, info.fps) == (9, 64, 48, 24.0)
    assert read_video(out).frames.std() > 1
    assert sorted(os.listdir(out.parent)) == ["output.json", "output.mp4"], "no temporary file left behind"
    record = json.loads((out.parent / "output.json").read_text())
    assert (record["generator"], record["speed"], record["steps"]) == ("wan", "default", 2)
    assert record["fp8"].startswith("off: FP8 needs a CUDA GPU")  # CPU: the preset falls back, and says so
    captured = capsys.readouterr()
    assert "wrote" in captured.out
    assert "ex4d.ckpt: 48 tensors loaded, 0 missing, 0 unexpected" in captured.err
    assert "runs without FP8" in captured.err


def test_generate_speed_preset_errors(tiny_models_dir, render_videos, tmp_path, capsys):
    out = tmp_path / "t.mp4"
    common = ["generate", "--color_video", render_videos[0], "--mask_video", render_videos[1], "--output_video",
              str(out), "--models_dir", tiny_models_dir, "--device", "cpu"]
    assert main(common + ["--speed", "turbo", "--steps", "5"]) == 2
    assert "the 'turbo' preset runs exactly 4 steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(common + ["--speed", "warp"])
    assert exc.value.code == 2 and "invalid choice: 'warp'" in capsys.readouterr().err
    assert not out.exists()


def test_generate_frames_limit_and_draft(render_videos, tmp_path):
    out = tmp_path / "draft.mp4"
    assert main(["generate", "--generator", "draft", "--color_video", render_videos[0], "--mask_video",
                 render_videos[1], "--output_video", str(out), "--frames", "5"]) == 0
    assert probe(out).num_frames == 5


def test_generate_bad_inputs(tiny_models_dir, render_videos, tmp_path, capsys):
    short_mask = tmp_path / "short_mask.mp4"
    write_mask_video(short_mask, np.full((4, 48, 64), 255, np.uint8), 24.0)
    out = tmp_path / "x.mp4"
    rc = main(["generate", "--generator", "draft", "--color_video", render_videos[0], "--mask_video",
               str(short_mask), "--output_video", str(out), "--frames", "0"])
    assert rc == 2 and "mask has 4 frames, colour has 9" in capsys.readouterr().err
    rc = main(["generate", "--color_video", render_videos[0], "--mask_video", render_videos[1],
               "--output_video", str(out), "--models_dir", str(tmp_path / "nowhere"), "--device", "cpu"])
    err = capsys.readouterr().err
    # missing weights are resource_unavailable, exit 4 (as for depth weights), with the download command
    assert rc == 4 and "hf download Wan-AI/Wan2.1-I2V-14B-480P" in err
    assert not out.exists()


def test_models_check_complete_folder(tiny_models_dir, capsys):
    assert main(["models", "check", tiny_models_dir]) == 0
    text = capsys.readouterr().out
    for name in ("dit", "text_encoder", "image_encoder", "vae", "tokenizer", "ex4d_ckpt"):
        assert any(line.split()[:2] == [name, "OK"] for line in text.splitlines()), (name, text)
    assert "48 tensors loaded, 0 missing, 0 unexpected" in text


def test_models_check_wrong_and_missing_files(tiny_models_dir, tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in os.listdir(tiny_models_dir):
        if name == "Wan2.1_VAE.pth":  # a CLIP file under the VAE's name
            os.symlink(os.path.join(tiny_models_dir, "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"),
                       folder / name)
        elif name != "ex4d.ckpt":
            os.symlink(os.path.join(tiny_models_dir, name), folder / name)
    assert main(["models", "check", str(folder)]) == 4
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert any(line.split()[:2] == ["vae", "WRONG"] for line in lines)
    assert "detected as wan_video_image_encoder" in captured.out
    assert any(line.split()[:2] == ["ex4d_ckpt", "MISSING"] for line in lines)
    assert "hf download yihouxiang/EX-4D ex4d.ckpt" in captured.out
    assert "vae, ex4d_ckpt missing or wrong" in captured.err


def test_models_check_convert_to_safetensors(tiny_models_dir, tmp_path, capsys):
    import shutil

    from ex4d_engine.generation.wan.adapter import detect_model

    folder = tmp_path / "copy"
    shutil.copytree(tiny_models_dir, folder)
    assert main(["models", "check", str(folder), "--convert"]) == 0
    text = capsys.readouterr().out
    for stem in ("models_t5_umt5-xxl-enc-bf16", "Wan2.1_VAE", "models_clip_open-clip-xlm-roberta-large-vit-huge-14"):
        converted = folder / f"{stem}.safetensors"
        assert converted.is_file() and f"wrote {converted}" in text
        assert f"{converted}" in text.split(f"wrote {converted}", 1)[1], "check used the safetensors copy"
        assert detect_model(str(converted))[2] == detect_model(str(folder / f"{stem}.pth"))[2]


def test_models_list_shows_generators(capsys, tiny_models_dir):
    assert main(["models", "--models_dir", tiny_models_dir]) == 0
    text = capsys.readouterr().out
    generators = text.split("== Generators", 1)[1]
    assert any(line.split()[:2] == ["wan", "READY"] for line in generators.splitlines()), generators


def test_run_video_to_generated_video(tiny_video, tiny_models_dir, tmp_path):
    video, depth = tiny_video
    out_dir = tmp_path / "run"
    rc = main(["run", "--input_video", str(video), "--depth_file", str(depth), "--cam", "30",
               "--output_dir", str(out_dir), "--models_dir", tiny_models_dir, "--device", "cpu", "--steps", "2",
               "--area", "4096", "--keep_conditioning"])
    assert rc == 0
    info = probe(out_dir / "output_30.mp4")
    assert info.num_frames == 9 and info.fps == 24.0
    assert (out_dir / "color_30.mp4").is_file() and (out_dir / "mask_30.mp4").is_file()


def test_package_api_for_the_server(tiny_models_dir, tmp_path):
    import subprocess
    import sys

    import ex4d_engine.generation.wan as wan

    assert wan.models_status(tiny_models_dir) == {"present": [n.name for n in wan.model_folder.list_needs(tiny_models_dir)[1]],
                                                  "missing": [], "get": []}
    status = wan.models_status(str(tmp_path))
    assert status["present"] == [] and "ex4d.ckpt (LoRA + camera encoder)" in status["missing"]
    assert f"hf download yihouxiang/EX-4D ex4d.ckpt --local-dir {tmp_path}" in status["get"]
    # the server's HTTP process imports the package for health checks: it must not pull in torch
    code = "import sys, ex4d_engine.generation.wan; assert 'torch' not in sys.modules, 'torch imported'"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
