"""DepthCrafter without its research-only parts: every missing piece is named with how to get it."""

from __future__ import annotations

import numpy as np
import pytest

from ex4d_engine.depth import DepthSettings, estimate_depth, get_backend
from ex4d_engine.depth.depthcrafter import SEED_SETTINGS, checkout_problem
from ex4d_engine.errors import ResourceError

FRAMES = np.zeros((2, 64, 64, 3), np.uint8)


def test_without_a_checkout_the_message_says_what_is_missing_and_how_to_get_it(tmp_path):
    with pytest.raises(ResourceError) as err:
        estimate_depth("depthcrafter", FRAMES, models_dir=str(tmp_path), device="cpu")
    msg = err.value.message
    assert "no DepthCrafter checkout given (--depthcrafter-repo DIR or $EX4D_DEPTHCRAFTER_REPO)" in msg
    assert "git clone https://github.com/Tencent/DepthCrafter" in msg
    assert "hf download tencent/DepthCrafter" in msg
    assert "hf download stabilityai/stable-video-diffusion-img2vid" in msg
    assert "--backend depth-anything" in msg  # the licence-clean way out


def test_a_folder_that_is_not_a_checkout_is_named(tmp_path):
    (tmp_path / "DepthCrafter").mkdir()
    with pytest.raises(ResourceError, match="is not a DepthCrafter checkout") as err:
        estimate_depth("depthcrafter", FRAMES, depthcrafter_repo=str(tmp_path / "DepthCrafter"), device="cpu")
    assert "depthcrafter/depth_crafter_ppl.py" in err.value.message


def test_checkout_from_the_environment(tmp_path, monkeypatch):
    repo = tmp_path / "dc"
    (repo / "depthcrafter").mkdir(parents=True)
    for name in ("depth_crafter_ppl.py", "unet.py"):
        (repo / "depthcrafter" / name).write_text("# placeholder\n")
    monkeypatch.setenv("EX4D_DEPTHCRAFTER_REPO", str(repo))
    rows = get_backend("depthcrafter").components(DepthSettings(models_dir=str(tmp_path / "models")))
    code = rows[0]
    assert code.found and code.location == str(repo)
    assert checkout_problem(None).startswith("no DepthCrafter checkout")
    weights = {r.name: r for r in rows[2:]}
    assert not weights["weights tencent/DepthCrafter"].found
    assert str(tmp_path / "models" / "DepthCrafter") in weights["weights tencent/DepthCrafter"].location


def test_seed_settings():
    assert (SEED_SETTINGS.num_inference_steps, SEED_SETTINGS.guidance_scale, SEED_SETTINGS.window_size,
            SEED_SETTINGS.overlap, SEED_SETTINGS.seed) == (5, 1.0, 110, 25, 42)


def test_the_backend_says_it_is_not_for_commercial_use():
    backend = get_backend("depthcrafter")
    assert backend.commercial_use is False and "research" in backend.licence
