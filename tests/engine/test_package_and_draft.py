import numpy as np
from ex4d_testing import run_cli

from ex4d_engine.generation.base import GenerationRequest
from ex4d_engine.generation.draft import DraftGenerator
from ex4d_engine.pipeline import ReconOptions, build_meshes, load_scene, write_scene_package
from ex4d_engine.scene_package import read_scene_package
from ex4d_engine.video_io import probe


def test_scene_package_matches_the_documented_format(tmp_path, tiny_video):
    video, depth = tiny_video
    scene = load_scene(video, depth_file=depth, options=ReconOptions(focal_px=60.0, renderer="opengl", device="cpu"))
    path = tmp_path / "tiny.ex4dscene.zip"
    write_scene_package(scene, path)
    meta, mesh, positions = read_scene_package(path)
    h, w, t = scene.height, scene.width, scene.num_frames
    assert meta["format"] == "ex4d.scene" and meta["contract_version"] == 1
    assert (meta["width"], meta["height"], meta["num_frames"], meta["fps"]) == (w, h, t, 24.0)
    assert meta["K"][0][0] == 60.0 and meta["intrinsics_source"] == "focal"
    assert mesh["vertices"].shape == (h * w, 3) and mesh["faces"].shape == (2 * (h - 1) * (w - 1) + 2, 3)
    assert mesh["hidden"].shape == (t, h * w) and mesh["hidden_faces"].shape == (t, mesh["faces"].shape[0])
    assert positions.shape == (t, h * w, 3)
    assert np.array_equal(positions[0], mesh["vertices"])
    meshes = build_meshes(scene)
    assert np.allclose(positions[4], meshes.vertices[4].numpy())
    # UV of pixel (row 0, col 0) is its centre, Blender's bottom-left origin
    assert np.allclose(mesh["uv"][0], [0.5 / w, 1 - 0.5 / h])
    import zipfile

    with zipfile.ZipFile(path) as z:
        z.extract("source.mp4", tmp_path)
    info = probe(tmp_path / "source.mp4")
    assert (info.width, info.height, info.num_frames) == (w, h, t)


def test_draft_generator_fills_holes_and_keeps_visible_pixels():
    rng = np.random.default_rng(0)
    colour = np.full((3, 40, 60, 3), 200, np.uint8)
    colour[..., 0] = np.linspace(0, 255, 60).astype(np.uint8)
    mask = np.full((3, 40, 60), 255, np.uint8)
    mask[:, 10:25, 20:35] = 0
    masked = colour * (mask[..., None] // 255)
    out = DraftGenerator().generate(GenerationRequest(masked, mask, 24.0, seed=int(rng.integers(10))))
    import cv2

    far_from_hole = cv2.erode(mask[0], np.ones((7, 7), np.uint8)) == 255
    assert np.array_equal(out[:, far_from_hole], masked[:, far_from_hole])
    hole = mask == 0
    assert (out[hole].astype(int).sum(-1) > 100).all()  # no black left
    # the fill continues the horizontal gradient
    assert np.abs(out[:, 17, 27, 0].astype(int) - colour[0, 17, 27, 0]).max() < 40


def test_demo_runs_end_to_end(tmp_path):
    result = run_cli("demo", "--output_dir", tmp_path, "--presets", "30,zoom_in", timeout=600)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "contact_sheet.png").stat().st_size > 10_000
    for name in ("color_30.mp4", "mask_30.mp4", "draft_30.mp4", "draft_zoom_in.mp4", "garden.ex4dscene.zip"):
        assert (tmp_path / name).is_file(), name
    assert probe(tmp_path / "draft_30.mp4").num_frames == 49
