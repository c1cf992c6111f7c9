"""Every bad input answers 4xx with the JSON error body naming the field, and leaves nothing behind."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
import requests


@pytest.fixture(scope="module")
def import_root(tmp_path_factory, clip):
    root = tmp_path_factory.mktemp("imports")
    (root / "clip.mp4").write_bytes(clip.video.read_bytes())
    (root / "depth.npy").write_bytes(clip.depth.read_bytes())
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.mp4").write_bytes(clip.video.read_bytes())
    os.symlink(outside / "secret.mp4", root / "link.mp4")
    return root


@pytest.fixture(scope="module")
def server(start_server, import_root, tmp_path_factory):
    # an empty models dir: the wan generator is unavailable here whatever the machine holds
    return start_server("--import-root", str(import_root), "--max-upload-mb", "1",
                        "--models-dir", str(tmp_path_factory.mktemp("no_models")))


def _error(response: requests.Response, status: int, field: str | None, text: str = "") -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "field"}
    assert body["field"] == field, body
    assert text.lower() in body["message"].lower(), body
    return body


def _scene_dirs(server) -> set[str]:
    return {p.name for p in (server.data_dir / "scenes").iterdir()}


def _post_scene(server, files=None, **data):
    return server.post("/v1/scenes", files=files, data={k: str(v) for k, v in data.items()})


# ---------------------------------------------------------------------- scenes
def test_scene_needs_exactly_one_source(server, clip, import_root):
    _error(_post_scene(server, num_frames=9), 422, "video", "exactly one of video")
    with open(clip.video, "rb") as video:
        _error(_post_scene(server, files={"video": ("a.mp4", video)}, import_path=str(import_root / "clip.mp4")),
               422, "video", "exactly one")


@pytest.mark.parametrize("name,content,message", [
    ("clip.mp4", b"this is not a video at all" * 40, "cannot decode"),
    ("clip.txt", b"whatever", "video must be one of"),
    ("clip.mp4", b"", "empty"),
])
def test_undecodable_or_wrong_video_is_422(server, clip, name, content, message):
    before = _scene_dirs(server)
    with open(clip.depth, "rb") as depth:
        response = _post_scene(server, files={"video": (name, content), "depth": ("d.npy", depth)})
    _error(response, 422, "video", message)
    assert _scene_dirs(server) == before  # the upload was removed


def test_upload_over_the_limit_is_413(server, clip):
    big = os.urandom(2 << 20)
    response = _post_scene(server, files={"video": ("clip.mp4", big)})
    assert response.status_code == 413 and response.json()["error"] == "too_large"


@pytest.mark.parametrize("fields,field,message", [
    ({"num_frames": 0}, "num_frames", "greater than or equal to 1"),
    ({"num_frames": 5000}, "num_frames", "limit is 1025"),
    ({"num_frames": "many"}, "num_frames", "valid integer"),
    ({"fov_deg": 200}, "fov_deg", "less than 180"),
    ({"focal_px": -3}, "focal_px", "greater than 0"),
    ({"fov_deg": 60, "focal_px": 500}, "fov_deg", "not both"),
    ({"depth_source": "no-such-model"}, "depth_source", "depth file was given"),
    ({"only_first_frame": "perhaps"}, "only_first_frame", "valid boolean"),
])
def test_bad_scene_options_are_422(server, clip, fields, field, message):
    _error(server.upload_scene(clip, **{k: str(v) for k, v in fields.items()}), 422, field, message)


def _depth_upload(server, clip, array: np.ndarray | bytes, name: str = "depth.npy"):
    if isinstance(array, np.ndarray):
        path = clip.video.parent / f"bad_{abs(hash(array.tobytes())) % 10**8}.npy"
        np.save(path, array)
        content = path.read_bytes()
    else:
        content = array
    with open(clip.video, "rb") as video:
        return _post_scene(server, files={"video": ("clip.mp4", video), "depth": (name, content)}, num_frames=9)


def test_bad_depth_is_422(server, clip):
    good = np.load(clip.depth)
    _error(_depth_upload(server, clip, good[:, :, :10]), 422, "depth", "the video needs")
    _error(_depth_upload(server, clip, good[:4]), 422, "depth", "has 4 frames")
    nan = good.copy(); nan[2, 3, 4] = np.nan
    _error(_depth_upload(server, clip, nan), 422, "depth", "NaN")
    _error(_depth_upload(server, clip, -good), 422, "depth", "positive")
    _error(_depth_upload(server, clip, b"not numpy"), 422, "depth", "cannot read")
    _error(_depth_upload(server, clip, good, name="depth.exr"), 422, "depth", "must be one of")


def test_no_depth_and_no_backend_is_422(server, clip):
    with open(clip.video, "rb") as video:
        response = _post_scene(server, files={"video": ("clip.mp4", video)})
    _error(response, 422, "depth", "no depth given")


def test_import_only_from_configured_roots(server, import_root, tmp_path):
    ok = _post_scene(server, import_path=str(import_root / "clip.mp4"),
                     depth_import_path=str(import_root / "depth.npy"), num_frames=9)
    assert ok.status_code == 202, ok.text
    assert ok.json()["source_name"] == "clip.mp4"
    depth = str(import_root / "depth.npy")
    for path, message in [
        ("/etc/passwd", "not inside a configured import root"),
        (f"{import_root}/../{tmp_path.name}/x.mp4", "not inside"),
        (str(import_root / "link.mp4"), "not inside"),  # a symlink pointing out of the root
        ("clip.mp4", "absolute path"),
        (str(import_root / "missing.mp4"), "no such file"),
    ]:
        _error(_post_scene(server, import_path=path, depth_import_path=depth), 422, "import_path", message)
    _error(_post_scene(server, import_path=str(import_root / "clip.mp4"), depth_import_path="/etc/hostname"),
           422, "depth_import_path", "not inside")


def test_imports_disabled_without_roots(start_server, clip):
    plain = start_server()
    _error(_post_scene(plain, import_path=str(clip.video)), 422, "import_path", "imports are disabled")


# ---------------------------------------------------------------------- jobs
@pytest.fixture(scope="module")
def scene(server, clip):
    return server.make_ready_scene(clip)


def _job(server, body) -> requests.Response:
    if isinstance(body, (bytes, str)):
        return server.post("/v1/jobs", data=body, headers={"Content-Type": "application/json"})
    return server.post("/v1/jobs", json=body)


def test_bad_job_bodies_are_422(server, scene, trajectory_for):
    good = {"scene_id": scene["id"], "trajectory": trajectory_for(scene)}
    assert _job(server, good).status_code == 202

    def variant(path, value):
        body = copy.deepcopy(good)
        target = body
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return body

    cases = [
        (variant(("scene_id",), "s_0000000000000000"), "scene_id", "not found"),
        (variant(("scene_id",), "../../etc"), "scene_id", "pattern"),
        (variant(("trajectory",), KeyError), "trajectory", "field required"),
        (variant(("trajectory", "version"), 2), "trajectory", "version must be 1"),
        (variant(("trajectory", "frames"), []), "trajectory", "at least 1 frame"),
        (variant(("trajectory", "width"), -5), "trajectory", "width must be a positive integer"),
        (variant(("trajectory", "frames", 1, "w2c", 0, 0), -1.0), "trajectory", "frames[1].w2c"),
        (variant(("trajectory", "frames", 2, "K", 0, 1), 3.0), "trajectory", "zero skew"),
        (variant(("trajectory", "frames"), good["trajectory"]["frames"] * 2), "trajectory", "the scene has 9"),
        (variant(("trajectory", "width"), 40000), "trajectory", "over the limit"),
        (variant(("options",), {"generator": "magic"}), "options.generator", "draft"),
        (variant(("options",), {"seed": -1}), "options.seed", "greater than or equal to 0"),
        (variant(("options",), {"steps": 0}), "options.steps", "greater than or equal to 1"),
        (variant(("options",), {"profile": "../x"}), "options.profile", "pattern"),
        (variant(("options",), {"colour": "blue"}), "options.colour", "extra"),
        (variant(("surprise",), 1), "surprise", "extra"),
    ]
    for body, field, message in cases:
        _error(_job(server, body), 422, field, message)

    nan = json.dumps(good).replace('"w2c": [[1.0', '"w2c": [[NaN', 1)
    _error(_job(server, nan), 422, "trajectory", "NaN")
    _error(_job(server, b"{not json"), 422, None, "json")
    _error(_job(server, b"[]"), 422, None, "")


def test_unavailable_generator_is_503_with_reason(server, scene, trajectory_for):
    health = requests.get(server.url + "/v1/health", timeout=10).json()
    wan = next(g for g in health["generators"] if g["name"] == "wan")
    assert wan["available"] is False and "weights missing" in wan["reason"] and wan["models_missing"]
    body = _error(server.submit_job(scene, trajectory_for(scene), generator="wan"), 503, None, "not available")
    assert wan["reason"] in body["message"] and body["error"] == "resource_unavailable"


def _failed_scene(server) -> dict:
    """A scene whose recon fails for sure: its row points at a source file that is not there."""
    from server.store import Store

    store = Store(server.data_dir / "ex4d.sqlite3")
    scene, job = store.create_scene(source_name="gone.mp4", source_path=str(server.data_dir / "gone.mp4"),
                                    depth_path=None, options={"num_frames": 9, "depth_source": "file"})
    store.close()
    requests.get(server.url + "/v1/health", timeout=10)  # the worker polls the queue within 0.5 s anyway
    assert server.wait_job(job.id)["state"] == "failed"
    return server.get(f"/v1/scenes/{scene.id}").json()


def test_job_for_a_scene_that_is_not_ready_is_409(server, scene, trajectory_for):
    failed = _failed_scene(server)
    assert failed["state"] == "failed" and failed["error"]["error"] == "invalid_input"
    answer = server.post("/v1/jobs", json={"scene_id": failed["id"], "trajectory": trajectory_for(scene)})
    _error(answer, 409, None, "is not ready (state: failed)")
    _error(server.get(f"/v1/scenes/{failed['id']}/package"), 409, None, "is not ready")


def test_unknown_and_malformed_ids(server):
    _error(server.get("/v1/jobs/j_0123456789abcdef"), 404, None, "not found")
    _error(server.get("/v1/scenes/s_0123456789abcdef"), 404, None, "not found")
    _error(server.get("/v1/jobs/..%2F..%2Fetc%2Fpasswd"), 404, None, "no such endpoint")
    _error(server.get("/v1/jobs/..j_0123456789abcdef"), 422, "job_id", "pattern")
    _error(server.get("/v1/scenes/..%5C..%5Cetc/package"), 422, "scene_id", "pattern")
    _error(server.get("/v1/jobs/j_0123456789abcdef/conditioning/depth"), 422, "which", "colour")
    _error(server.get("/v1/jobs", params={"limit": 0}), 422, "limit", "greater than or equal to 1")
    _error(server.get("/v1/no/such/route"), 404, None, "no such endpoint")
    _error(server.post("/v1/health"), 405, None, "")


def test_result_before_success_is_404(server, scene, trajectory_for):
    from server.store import Store

    store = Store(server.data_dir / "ex4d.sqlite3")  # a job whose trajectory cannot be read fails for sure
    job = store.create_job(scene_id=scene["id"], options={"generator": "draft"}, trajectory_json="{}",
                           num_frames=1, fps=12.0)
    store.close()
    assert server.wait_job(job.id)["state"] == "failed"
    _error(server.get(f"/v1/jobs/{job.id}/result"), 404, None, "has no result (kind generate, state failed)")
    recon = server.get(f"/v1/jobs/{scene['recon_job_id']}/result")
    _error(recon, 404, None, "has no result")
