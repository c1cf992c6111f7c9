"""Schemathesis against the published /openapi.json of a real server: no 5xx, and every answer
conforms to the schema (status code documented, content type, body, headers). Positive and negative
generation, at least 500 requests in all."""

from __future__ import annotations

import collections

import requests
import schemathesis  # the server extra: pip install -e .[server]
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (content_type_conformance, not_a_server_error, response_headers_conformance,
                                 response_schema_conformance, status_code_conformance)

MIN_CASES = 500
EXAMPLES_PER_MODE = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


def test_fuzz_openapi_no_server_errors(server, ready_scene, trajectory_for):
    job = server.submit_job(ready_scene, trajectory_for(ready_scene)).json()
    assert server.wait_job(job["id"])["state"] == "succeeded"
    real_ids = {"scene_id": ready_scene["id"], "job_id": job["id"]}
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json", headers=server.headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    calls: collections.Counter = collections.Counter()
    statuses: collections.Counter = collections.Counter()

    for operation in operations:
        ids = {name: value for name, value in real_ids.items() if "{" + name + "}" in operation.path}
        passes = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)]
        if ids:  # also on things that exist: a ready scene, a finished job
            passes.append((GenerationMode.POSITIVE, ids))
        for mode, path_parameters in passes:
            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
            @settings(max_examples=EXAMPLES_PER_MODE, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case):
                response = case.call(base_url=server.url, headers=server.headers, timeout=30)
                calls[operation.label] += 1
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:  # nothing to make invalid (e.g. health has no parameters)
                assert mode == GenerationMode.NEGATIVE

    total = sum(calls.values())
    print(f"fuzzing: {total} requests, statuses {dict(statuses)}")
    assert total >= MIN_CASES, (total, dict(calls))
    assert not [s for s in statuses if s >= 500], dict(statuses)
    # still healthy, and still runs jobs, after the fuzzing
    assert requests.get(server.url + "/v1/health", timeout=10).json()["status"] == "ok"
    assert server.wait_job(server.submit_job(ready_scene).json()["id"])["state"] == "succeeded"
