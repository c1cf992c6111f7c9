"""Issue 11 item 4: depth files are checked from their header before any data is read.

The attacks: a 1 MB .npz holding 1 GiB (the HTTP process grew by 2 GB), and .npy/.npz headers
claiming 238 GiB to 3.5 PiB (HTTP 500). Against the real loader; the server side is in
tests/server/test_security.py.
"""

from __future__ import annotations

import resource

import numpy as np
import pytest
from ex4d_attacks import npy_header_only, npz_bomb

from ex4d_engine.depth.file import DepthTooLargeError, load_depth_file
from ex4d_engine.errors import InputError

CLIP_SIZES = {(64, 48)}


@pytest.mark.parametrize("shape", [(1 << 20, 1 << 14, 1 << 14), (9, 48, 1 << 40), (1 << 40, 48, 64)])
def test_huge_npy_header_is_refused_without_reading(tmp_path, shape):
    path = tmp_path / "depth.npy"
    path.write_bytes(npy_header_only(shape))
    with pytest.raises(InputError) as caught:
        load_depth_file(path, sizes=CLIP_SIZES, max_frames=9)
    assert "the video needs 64x48" in caught.value.message or "truncated" in caught.value.message


def test_huge_header_without_a_clip_is_truncated_not_oom(tmp_path):
    path = tmp_path / "depth.npy"
    path.write_bytes(npy_header_only((1 << 30, 1 << 20, 1 << 10)))  # 3.5 PiB claimed
    with pytest.raises(InputError, match="truncated"):
        load_depth_file(path)


def test_npz_bomb_of_the_right_size_reads_only_the_frames_needed(tmp_path):
    """~1 GiB of zeros at the clip's size (1 MB compressed): only 9 frames are inflated."""
    path = tmp_path / "depth.npz"
    frames = (1 << 30) // (48 * 64 * 4)
    path.write_bytes(npz_bomb((frames, 48, 64)))
    assert path.stat().st_size < 2 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    depth = load_depth_file(path, sizes=CLIP_SIZES, max_frames=9)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert depth.shape == (9, 48, 64)
    assert grown_mb < 64, f"the process grew by {grown_mb:.0f} MB reading 9 frames"


def test_npz_bomb_of_another_size_is_refused_from_the_header(tmp_path):
    path = tmp_path / "depth.npz"
    path.write_bytes(npz_bomb((16, 1024, 1024)))  # 64 MiB unpacked; the header alone says no
    with pytest.raises(InputError, match="is 1024x1024; the video needs 64x48"):
        load_depth_file(path, sizes=CLIP_SIZES, max_frames=9)


def test_data_over_the_cap_is_too_large(tmp_path):
    path = tmp_path / "depth.npy"
    np.save(path, np.ones((9, 48, 64), np.float64))
    with pytest.raises(DepthTooLargeError) as caught:
        load_depth_file(path, max_bytes=1 << 16)
    assert caught.value.http_status == 413 and "over the limit" in caught.value.message


@pytest.mark.parametrize("array", [np.array([["a"]]), np.zeros((2, 4, 4), complex), np.zeros((2, 4, 4), bool)])
def test_non_numeric_dtypes_are_refused(tmp_path, array):
    path = tmp_path / "depth.npy"
    np.save(path, array)
    with pytest.raises(InputError, match="plain float or integer"):
        load_depth_file(path)


def test_object_array_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "depth.npy"
    np.save(path, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="plain float or integer"):
        load_depth_file(path)


@pytest.mark.parametrize("shape,order", [((9, 48, 64), "C"), ((48, 64), "C"), ((9, 48, 64, 1), "C"),
                                         ((9, 48, 64), "F")])
def test_good_depth_loads_exactly(tmp_path, shape, order):
    rng = np.random.default_rng(0)
    array = np.asarray(rng.uniform(1, 5, shape), order=order)
    for suffix in (".npy", ".npz"):
        path = tmp_path / f"depth{suffix}"
        np.save(path, array) if suffix == ".npy" else np.savez_compressed(path, depth=array)
        depth = load_depth_file(path, sizes=CLIP_SIZES, max_frames=5)
        expected = array.reshape((-1, 48, 64))[:5 if order == "C" else None].astype(np.float32)
        np.testing.assert_array_equal(depth, expected)
