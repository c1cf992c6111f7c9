import numpy as np
import pytest

from ex4d_engine import video_io
from ex4d_engine.errors import InputError, NotFoundError


@pytest.mark.parametrize("fps", [24.0, 30000 / 1001, 15.0])
def test_fps_and_frame_count_survive_a_round_trip(tmp_path, fps):
    frames = (np.random.default_rng(0).random((7, 32, 48, 3)) * 255).astype(np.uint8)
    path = tmp_path / "clip.mp4"
    video_io.write_video(path, frames, fps)
    info = video_io.probe(path)
    assert (info.width, info.height, info.num_frames) == (48, 32, 7)
    assert info.fps == pytest.approx(fps, rel=1e-3)


def test_masks_stay_exactly_binary_on_disk(tmp_path):
    rng = np.random.default_rng(1)
    masks = np.where(rng.random((5, 40, 56)) > 0.5, 255, 0).astype(np.uint8)
    path = tmp_path / "mask.mp4"
    video_io.write_mask_video(path, masks, 30.0)
    assert np.array_equal(video_io.read_mask_video(path), masks)
    raw = video_io.read_video(path).frames  # any reader sees pure 0/255, not grey
    assert set(np.unique(raw)) == {0, 255}


def test_a_colour_video_is_not_taken_for_a_mask(tmp_path):
    colour = (np.random.default_rng(2).random((3, 32, 48, 3)) * 255).astype(np.uint8)
    path = tmp_path / "color_30.mp4"
    video_io.write_video(path, colour, 24.0)
    with pytest.raises(InputError, match="is not a mask video.*colour render"):
        video_io.read_mask_video(path)
    lossy = tmp_path / "lossy_mask.mp4"  # a mask through a lossy codec is still a mask
    masks = np.zeros((3, 32, 48), np.uint8)
    masks[:, :, 24:] = 255
    video_io.write_video(lossy, np.repeat(masks[..., None], 3, axis=-1), 24.0)
    assert np.array_equal(video_io.read_mask_video(lossy), masks)


@pytest.mark.parametrize("size, expected", [((1920, 1080), (1024, 576)), ((512, 512), (512, 512)),
                                            ((640, 360), (640, 384)), ((1080, 1920), (576, 1024))])
def test_working_size_follows_the_seed(size, expected):
    assert video_io.working_size(*size) == expected


def test_resize_keeps_the_aspect_ratio_by_cropping():
    # a circle must stay round: 640x360 -> 640x384 is a uniform scale plus a centre crop
    import cv2

    img = np.zeros((360, 640, 3), np.uint8)
    cv2.circle(img, (320, 180), 100, (255, 255, 255), -1)
    out = video_io.resize_keep_aspect(img[None], 640, 384)[0]
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 2


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(InputError):
        video_io.write_video(tmp_path / "x.mp4", np.zeros((0, 8, 8, 3), np.uint8), 24)
    with pytest.raises(InputError):
        video_io.write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), np.uint8), 0)
    assert list(tmp_path.iterdir()) == []


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(NotFoundError):
        video_io.read_video(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError):
        video_io.read_video(empty)
