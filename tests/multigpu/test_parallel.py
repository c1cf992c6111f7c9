"""GPU-group gangs (:mod:`ex4d_engine.generation.wan.parallel`) on the CPU.

USP itself needs NCCL and GPUs; everything around it runs here for real: torchrun starts the gang,
rank 0 talks to the caller over the socket, requests and cancel decisions are broadcast over gloo,
rank 0 returns the video. The gang runs the draft generator, whose output is known exactly.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import psutil
import pytest

from ex4d_engine.errors import InputError, JobCancelledError, NotFoundError, ResourceError
from ex4d_engine.generation.base import GenerationRequest
from ex4d_engine.generation.draft import DraftGenerator
from ex4d_engine.generation.wan.parallel import (
    AUTHKEY_ENV, MULTICAST_OFF_ENV, GangGenerator, GangSpec, RankInfo, check_group_size, gang_command, gang_env)
from ex4d_engine.generation.gpu_groups import group_sizes


def _request(frames: int = 5, seed: int = 1, **overrides) -> GenerationRequest:
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, 255, (frames, 48, 64, 3), dtype=np.uint8)
    mask = np.zeros((frames, 48, 64), np.uint8)
    mask[:, :, :40] = 255
    return GenerationRequest(**{"colour": colour, "mask": mask, "fps": 12.0, "seed": seed, **overrides})


def _ranks(gang: GangGenerator) -> list[psutil.Process]:
    """The rank processes under torchrun's agent."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ranks = [p for p in psutil.Process(gang.process.pid).children(recursive=True)
                 if "ex4d_engine.generation.wan.parallel" in " ".join(p.cmdline())]
        if len(ranks) == gang.spec.size:
            return ranks
        time.sleep(0.05)
    raise AssertionError("ranks not found")


# ---------------------------------------------------------------------- pure parts
@pytest.mark.parametrize("size", [1, 2, 4, 8, 10, 20, 40])
def test_group_sizes_of_one_or_even_divisors_of_the_40_heads_are_accepted(size):
    check_group_size(size)
    assert size in group_sizes()


@pytest.mark.parametrize("size", [5])
def test_odd_group_sizes_are_refused_because_guidance_splits_over_two_halves(size):
    with pytest.raises(InputError, match=f"a GPU group of {size} is odd: the two guidance branches run on two halves"):
        check_group_size(size)


@pytest.mark.parametrize("size", [0, 3, 6, 7, 16])
def test_group_sizes_that_do_not_divide_the_heads_are_refused(size):
    with pytest.raises(InputError, match=f"a GPU group of {size} cannot split Wan's 40 attention heads"):
        check_group_size(size)


def test_gang_command_is_torchrun_of_this_module_with_the_spec():
    spec = GangSpec(size=4, generator="wan", models_dir="/models/wan", profile="balanced", tiny=True)
    command = gang_command(spec, "\0ex4d-gang-1-ab")
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in command and "--nproc-per-node=4" in command and "--max-restarts=0" in command
    module = command.index("-m", 3)
    assert command[module + 1] == "ex4d_engine.generation.wan.parallel"
    args = command[module + 2:]
    assert args == ["--address", "@ex4d-gang-1-ab", "--generator", "wan", "--models-dir", "/models/wan",
                    "--profile", "balanced", "--tiny"]
    assert all("\0" not in part for part in command)


@pytest.mark.parametrize("spec, message", [
    (GangSpec(size=3, generator="draft"), "cannot split Wan's 40 attention heads"),
    (GangSpec(size=2, generator="svd"), "a GPU group runs one of draft, wan"),
    (GangSpec(size=2, generator="wan"), "needs a models dir"),
])
def test_bad_specs_are_refused_before_anything_starts(spec, message):
    with pytest.raises(InputError, match=message):
        gang_command(spec, "\0x")
    with pytest.raises(InputError, match=message):
        GangGenerator(spec)


def test_gang_env_keeps_ours_adds_multicast_off_and_the_secret():
    env = gang_env(b"\x01\x02", base={"CUDA_VISIBLE_DEVICES": "2,3", "NCCL_NVLS_ENABLE": "1", "PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2,3" and env["PATH"] == "/bin"
    assert {k: env[k] for k in MULTICAST_OFF_ENV} == MULTICAST_OFF_ENV  # a caller's "1" is overridden
    assert env[AUTHKEY_ENV] == "0102"


def test_rank_info_comes_from_torchrun_or_names_what_is_missing():
    info = RankInfo.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "3"})
    assert (info.rank, info.world_size, info.local_rank, info.leader) == (3, 4, 3, False)
    assert RankInfo.from_env({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}).leader
    with pytest.raises(InputError, match="WORLD_SIZE is not set: this module runs under torchrun"):
        RankInfo.from_env({"RANK": "0", "LOCAL_RANK": "0"})


# ---------------------------------------------------------------------- a real gang of two
@pytest.fixture(scope="module")
def gang():
    generator = GangGenerator(GangSpec(size=2, generator="draft"), start_timeout_s=120)
    yield generator
    generator.close()


def test_gang_of_two_returns_what_one_process_makes(gang):
    assert gang.info["world_size"] == 2
    request = _request()
    seen = []
    video = gang.generate(request, progress=lambda fraction, stage: seen.append(fraction))
    np.testing.assert_array_equal(video, DraftGenerator().generate(request))
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(1.0)


def test_every_rank_runs_with_multicast_off(gang):
    ranks = _ranks(gang)
    assert sorted(int(p.environ()["RANK"]) for p in ranks) == [0, 1]
    for rank in ranks:
        env = rank.environ()
        assert {k: env.get(k) for k in MULTICAST_OFF_ENV} == MULTICAST_OFF_ENV


def test_cancel_stops_every_rank_and_the_gang_serves_the_next_request(gang):
    calls = []

    def should_cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(JobCancelledError):
        gang.generate(_request(frames=40), should_cancel=should_cancel)
    request = _request(seed=2)
    np.testing.assert_array_equal(gang.generate(request), DraftGenerator().generate(request))


def test_an_exception_from_the_progress_callback_stops_the_request_and_is_re_raised(gang):
    class ServerStopping(Exception):
        pass

    def progress(fraction, stage):
        raise ServerStopping()

    with pytest.raises(ServerStopping):
        gang.generate(_request(frames=20), progress=progress)
    assert gang.process.poll() is None


def test_bad_request_is_an_input_error_and_the_gang_lives_on(gang):
    bad = _request(mask=np.zeros((5, 10, 10), np.uint8))
    with pytest.raises(InputError, match="mask must be"):
        gang.generate(bad)
    request = _request(seed=3)
    np.testing.assert_array_equal(gang.generate(request), DraftGenerator().generate(request))


def test_a_dead_rank_ends_the_gang_and_the_next_request_starts_a_new_one(gang):
    first = gang.process.pid
    rank1 = next(p for p in _ranks(gang) if p.environ()["RANK"] == "1")
    os.kill(rank1.pid, signal.SIGKILL)
    gang.process.wait(60)  # torchrun's agent takes the whole gang down
    request = _request(seed=4)
    np.testing.assert_array_equal(gang.generate(request), DraftGenerator().generate(request))
    assert gang.process.pid != first


def test_close_stops_agent_and_ranks():
    gang = GangGenerator(GangSpec(size=2, generator="draft"), start_timeout_s=120)
    ranks = _ranks(gang)
    gang.close()
    assert gang.process.returncode == 0
    psutil.wait_procs(ranks, timeout=10)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ranks)


def test_wan_gang_with_a_missing_model_folder_names_it(tmp_path):
    with pytest.raises(NotFoundError, match="model folder .*missing-models does not exist"):
        GangGenerator(GangSpec(size=1, generator="wan", models_dir=str(tmp_path / "missing-models")),
                      start_timeout_s=120)


def test_gang_that_cannot_start_is_a_resource_error(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # torchrun itself fails
    with pytest.raises(ResourceError, match="exited \\(exit code 1\\) before rank 0 connected"):
        GangGenerator(GangSpec(size=2, generator="draft"), start_timeout_s=30)


# ---------------------------------------------------------------------- the Wan gang itself, on gloo
def test_wan_gang_of_two_splits_guidance_and_returns_the_single_process_video(tmp_path):
    """The whole GPU-group path on CPU: torchrun, gloo, tiny Wan models loaded on each rank, CFG-parallel
    (one branch per rank) inside diffsynth's pipeline, the video back over the socket."""
    import torch

    from ex4d_engine.generation.wan.generator import SamplerSettings, load_generator
    from ex4d_engine.generation.wan.tiny_models import TINY_SAMPLER, register_tiny_models, write_tiny_model_folder

    folder = str(tmp_path / "wan")
    write_tiny_model_folder(folder, seed=0)
    register_tiny_models(folder)
    request = _request(frames=5, seed=5)
    single = load_generator(folder, device="cpu", dtype=torch.float32, settings=SamplerSettings(**TINY_SAMPLER))
    expected = single.generate(request)
    gang = GangGenerator(GangSpec(size=2, generator="wan", models_dir=folder, tiny=True), start_timeout_s=300)
    try:
        assert gang.info["layouts"] == {"cfg": "cfg 2 x ulysses 1", "no_cfg": "cfg 1 x ulysses 2"}
        video = gang.generate(request)
    finally:
        gang.close()
    assert video.shape == expected.shape
    diff = np.abs(video.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, (diff.max(), diff.mean())
    assert expected.std() > 5  # a real picture, not a constant that would match anything
