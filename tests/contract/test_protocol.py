"""The one job protocol: typed objects, their rules, and the server's schemas built from them."""

from __future__ import annotations

import dataclasses

import pytest

from ex4d_engine import protocol
from ex4d_engine.errors import InputError
from ex4d_engine.protocol import (Job, JobOptions, JobRequest, JobState, Scene, SceneOptions, Take, TakeState,
                                  TERMINAL_JOB_STATES)

JOB = {
    "id": "j_0123456789abcdef", "kind": "generate", "scene_id": "s_0123456789abcdef", "state": "failed",
    "stage": "failed", "progress": 0.4, "attempts": 1, "created_at": "2026-11-26T14:00:00+00:00",
    "options": {"generator": "draft", "seed": 7}, "eta_s": None, "queue_position": None,
    "started_at": "2026-11-26T14:00:01+00:00", "finished_at": "2026-11-26T14:00:09+00:00",
    "error": {"error": "resource_unavailable", "message": "GPU out of memory during generate", "field": None},
    "num_frames": 49, "fps": 24.0, "result_url": None, "conditioning_urls": {"colour": "/c", "mask": None},
    "eye_urls": None,
    "preview": True,
}


def test_job_round_trips_through_its_dict():
    job = Job.from_dict(JOB)
    assert job.state is JobState.failed and job.error.error == "resource_unavailable"
    assert job.conditioning_urls.colour == "/c" and job.preview is True
    assert job.to_dict() == JOB
    stereo = {**JOB, "state": "succeeded", "error": None, "result_url": "/r",
              "eye_urls": {"left": "/r/left", "right": "/r/right"}}
    assert Job.from_dict(stereo).eye_urls.right == "/r/right" and Job.from_dict(stereo).to_dict() == stereo
    with pytest.raises(InputError, match="unknown field"):
        Job.from_dict({**stereo, "eye_urls": {"left": "/r/left", "centre": "/r/c"}})


def test_unknown_fields_are_refused_by_name():
    with pytest.raises(InputError) as info:
        JobOptions.from_dict({"generator": "draft", "sed": 3}, "options")
    assert info.value.field == "options.sed" and "unknown field(s) sed" in info.value.message


@pytest.mark.parametrize("options, field, words", [
    ({"generator": "sora"}, "options.generator", "must be one of draft, wan"),
    ({"seed": -1}, "options.seed", "must be >= 0"),
    ({"steps": 0}, "options.steps", "must be >= 1"),
    ({"profile": "a b"}, "options.profile", "must match"),
    ({"prompt": "x" * 4001}, "options.prompt", "longer than 4000"),
])
def test_options_rules_name_the_field(options, field, words):
    with pytest.raises(InputError) as info:
        JobOptions.from_dict(options).check()
    assert info.value.field == field and words in info.value.message


def test_scene_options_refuse_fov_and_focal_together():
    with pytest.raises(InputError, match="either fov_deg or focal_px"):
        SceneOptions(fov_deg=60.0, focal_px=500.0).check()
    with pytest.raises(InputError, match="fov_deg must be < 180"):
        SceneOptions(fov_deg=180.0).check()


def test_request_parses_nested_options_and_checks_the_scene_id():
    request = JobRequest.from_dict({"scene_id": "s_0123456789abcdef", "trajectory": {}, "options": {"seed": 5}})
    assert isinstance(request.options, JobOptions) and request.options.seed == 5
    with pytest.raises(InputError) as info:
        JobRequest.from_dict({"scene_id": "../etc", "trajectory": {}}).check()
    assert info.value.field == "scene_id"


def test_states():
    assert TERMINAL_JOB_STATES == {JobState.succeeded, JobState.failed, JobState.cancelled}
    assert not JobState.running.terminal and TakeState.cancelled.terminal and not TakeState.new.terminal


def test_a_take_follows_its_job():
    take = Take(key="k1", options=JobOptions(seed=7), camera="ShotCam")
    after = take.updated_from(Job.from_dict(JOB))
    assert after.state is TakeState.failed and after.job_id == JOB["id"]
    assert after.message == "GPU out of memory during generate" and after.options.seed == 7
    assert Take.from_dict(after.to_dict()).to_dict() == after.to_dict()


def test_generators_are_declared_once_with_loaders():
    assert protocol.DEFAULT_GENERATOR in protocol.GENERATORS
    for spec in protocol.GENERATORS.values():
        assert ":" in spec.loader
    assert protocol.GENERATORS["draft"].preview and not protocol.GENERATORS["wan"].preview


def test_server_schemas_are_built_from_the_protocol():
    pydantic = pytest.importorskip("pydantic")
    from server import schemas

    for model, cls in ((schemas.JobCreate, JobRequest), (schemas.JobPublic, Job), (schemas.ScenePublic, Scene),
                       (schemas.JobOptions, JobOptions)):
        assert list(model.model_fields) == [f.name for f in dataclasses.fields(cls)]
    with pytest.raises(pydantic.ValidationError):
        schemas.JobOptions(seed=-1)
    with pytest.raises(pydantic.ValidationError):
        schemas.JobCreate(scene_id="s_0123456789abcdef", trajectory={}, options={"generator": "x"})
    assert schemas.JobPublic(**JOB).model_dump(mode="json") == JOB
