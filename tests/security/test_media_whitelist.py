"""Issue 11 item 1: a playlist or reference file under a video name must not read other files.

The attack: a DASH manifest uploaded as ``holiday.mp4`` whose BaseURL is another video on the
machine; ffmpeg picks the demuxer from the content and decodes the outside file. Every probe and
decode goes through ``ex4d_engine.video_io`` with ffmpeg's format and protocol whitelists.
"""

from __future__ import annotations

import numpy as np
import pytest
from ex4d_attacks import dash_manifest, ffconcat, hls_playlist

from ex4d_engine import video_io
from ex4d_engine.errors import InputError


@pytest.fixture(scope="module")
def secret_video(tmp_path_factory):
    """A video outside any upload: what the attacker wants to read."""
    path = tmp_path_factory.mktemp("outside") / "secret.mp4"
    video_io.write_video(path, np.full((6, 48, 64, 3), 200, np.uint8), 12.0)
    assert video_io.probe(path).num_frames == 6  # readable as itself
    return path


@pytest.mark.parametrize("name,make,format_name", [
    ("holiday.mp4", dash_manifest, "dash"), ("holiday.m3u8", hls_playlist, "hls"),
    ("holiday.mkv", ffconcat, "concat")])
def test_playlist_disguised_as_video_is_refused(tmp_path, secret_video, name, make, format_name):
    upload = tmp_path / name
    upload.write_bytes(make(secret_video))
    for read in (video_io.probe, video_io.read_video):
        with pytest.raises(InputError) as caught:
            read(upload)
        assert f"{format_name!r} file, not a video container" in caught.value.message
        assert "playlist and reference formats are refused" in caught.value.message


def test_the_dash_attack_works_without_the_whitelist(tmp_path, secret_video):
    """The crafted manifest is a real attack: plain ffmpeg does decode the outside file through it."""
    import subprocess

    upload = tmp_path / "holiday.mp4"
    upload.write_bytes(dash_manifest(secret_video))
    assert len(upload.read_bytes()) < 600
    proc = subprocess.run([video_io.ffmpeg_exe(), "-hide_banner", "-i", str(upload), "-f", "null", "-"],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "dash" in proc.stderr


@pytest.mark.parametrize("suffix,args", [
    (".mp4", []), (".mkv", []), (".webm", ["-c:v", "libvpx-vp9"]), (".avi", ["-c:v", "mpeg4"]),
    (".ts", []), (".mpg", ["-c:v", "mpeg2video"]), (".gif", []), (".y4m", []),
    (".flv", ["-c:v", "flv"]), (".wmv", ["-c:v", "wmv2"]), (".mxf", ["-c:v", "mpeg2video"])])
def test_real_containers_still_decode(tmp_path, suffix, args):
    import subprocess

    path = tmp_path / f"clip{suffix}"
    proc = subprocess.run([video_io.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                           "testsrc=size=64x48:rate=12", "-frames:v", "5", *args, "-y", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"this ffmpeg cannot write {suffix}: {proc.stderr[-200:]}")
    info = video_io.probe(path)
    assert (info.width, info.height) == (64, 48) and info.num_frames == 5
    assert video_io.read_video(path).frames.shape == (5, 48, 64, 3)


def test_a_name_that_looks_like_a_url_is_read_as_a_file(tmp_path, secret_video):
    odd = tmp_path / "http:example.com.mp4"
    odd.write_bytes(secret_video.read_bytes())
    assert video_io.probe(odd).num_frames == 6
