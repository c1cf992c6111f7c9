import math

import numpy as np
import pytest

from ex4d_engine.errors import InputError
from ex4d_engine.presets import make_preset, pivot_radius, preset_eyes, seed_rounds

K = np.array([[500.0, 0, 256], [0, 500.0, 256], [0, 0, 1]])


def preset(name, n=49, r=2.7):
    return make_preset(name, num_frames=n, K=K, width=512, height=512, fps=30, radius=r)


def yaw_deg(w2c):
    forward = w2c[2, :3]  # camera z axis in world
    return math.degrees(math.atan2(forward[0], forward[2]))


def test_pivot_is_nearest_padded_frame0_depth_plus_015():
    depth = np.full((8, 8), 5.0)
    depth[3, 3] = 2.6
    depth[0, 0] = 0.5  # the border is overwritten by the skirt before the minimum is taken
    assert pivot_radius(depth) == pytest.approx(2.75)


@pytest.mark.parametrize("name", ["30", "-60", "90", "180", "sweep_90", "zoom_in", "zoom_out"])
@pytest.mark.parametrize("n", [1, 13, 49, 81])
def test_every_preset_starts_at_the_source_camera(name, n):
    traj = preset(name, n)
    assert len(traj) == n
    assert np.allclose(traj.w2c[0], np.eye(4), atol=1e-12)


def test_orbit_follows_the_seed_formula():
    r, n, deg = 2.7, 49, 30
    eyes = preset_eyes(str(deg), n, r)
    theta = np.linspace(0, math.radians(deg), n)
    assert np.allclose(eyes[:, 0], r * np.sin(theta))
    assert np.allclose(eyes[:, 1], 0.2 * r * (np.abs(np.cos(theta)) - 1))
    assert np.allclose(eyes[:, 2], r - r * np.abs(np.cos(theta)))
    traj = preset(str(deg), n, r)
    # the camera ends at +x (eyes[:, 0] = r sin(theta) > 0) looking back at the pivot on the z axis, so its
    # forward axis points towards -x: a yaw of -deg (atan2(forward_x, forward_z) < 0)
    assert eyes[-1, 0] > 0
    assert yaw_deg(traj.w2c[-1]) == pytest.approx(-deg, abs=1e-6)
    # every camera looks at the pivot (0, 0, r)
    for w2c in traj.w2c:
        pivot_cam = w2c[:3, :3] @ np.array([0, 0, r]) + w2c[:3, 3]
        assert abs(pivot_cam[0]) < 1e-9 and abs(pivot_cam[1]) < 1e-9 and pivot_cam[2] > 0


def test_seed_180_only_reaches_45_degrees_and_sweep_90_reaches_90():
    seed = preset("180")
    yaws = [abs(yaw_deg(w)) for w in seed.w2c]
    assert max(yaws) == pytest.approx(45.0, abs=0.01)
    assert np.allclose(seed.c2w[:, 2, 3], 0.0)  # stays in the source's z = 0 plane
    sweep = preset("sweep_90")
    yaws = [yaw_deg(w) for w in sweep.w2c]
    assert max(np.abs(yaws)) == pytest.approx(90.0, abs=0.01)
    assert np.sign(yaws[12]) != np.sign(yaws[36])  # both sides


def test_zoom_moves_along_the_optical_axis_without_turning():
    zin, zout = preset("zoom_in", r=3.0), preset("zoom_out", r=3.0)
    assert np.allclose(zin.w2c[:, :3, :3], np.eye(3)) and np.allclose(zout.w2c[:, :3, :3], np.eye(3))
    assert zin.c2w[-1, 2, 3] == pytest.approx(1.5) and zout.c2w[-1, 2, 3] == pytest.approx(-3.0)
    assert np.allclose(zin.c2w[:, :2, 3], 0)


def test_seed_rounds_quirk_and_switch():
    assert seed_rounds(49) == 1 and seed_rounds(98) == 2 and seed_rounds(7) == 7
    quirk = preset_eyes("30", 98, 2.7)
    plain = preset_eyes("30", 98, 2.7, use_seed_rounds=False)
    assert math.degrees(math.atan2(quirk[-1, 0], 2.7 - quirk[-1, 2])) == pytest.approx(60, abs=1e-6)
    assert math.degrees(math.atan2(plain[-1, 0], 2.7 - plain[-1, 2])) == pytest.approx(30, abs=1e-6)


def test_unknown_preset_names_the_choices():
    with pytest.raises(InputError, match="sweep_90"):
        preset("spiral")
