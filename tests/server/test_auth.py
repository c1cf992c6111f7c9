"""Auth and binding: bearer token on every route but health, the token file, loopback-only by default,
no CORS."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import requests

#: Concrete paths (well-formed ids that do not exist): auth is checked before anything else.
_JOB = "j_0123456789abcdef"
_SCENE = "s_0123456789abcdef"
PROTECTED = [
    ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"), ("GET", "/no/such/route"),
    ("GET", "/v1/scenes"), ("POST", "/v1/scenes"), ("GET", f"/v1/scenes/{_SCENE}"),
    ("GET", f"/v1/scenes/{_SCENE}/package"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs"),
    ("GET", f"/v1/jobs/{_JOB}"), ("DELETE", f"/v1/jobs/{_JOB}"), ("GET", f"/v1/jobs/{_JOB}/events"),
    ("GET", f"/v1/jobs/{_JOB}/result"), ("GET", f"/v1/jobs/{_JOB}/conditioning/colour"),
    ("GET", f"/v1/jobs/{_JOB}/result/left"),
]


def test_every_route_but_health_is_protected(server):
    schema = server.get("/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    covered = {(m, p.replace(_JOB, "{job_id}").replace(_SCENE, "{scene_id}").replace("colour", "{which}")
                .replace("/result/left", "/result/{eye}")) for m, p in PROTECTED}
    assert documented - covered == {("GET", "/v1/health")}  # this list keeps up with the API


@pytest.mark.parametrize("method,path", PROTECTED)
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", "Basic abc", "Bearer "])
def test_missing_or_wrong_token_is_401(server, method, path, header):
    headers = {"Authorization": header} if header else {}
    response = requests.request(method, server.url + path, headers=headers, timeout=10)
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


def test_right_token_passes(server):
    assert server.get("/v1/jobs").status_code == 200
    assert server.get(f"/v1/jobs/{_JOB}").status_code == 404


def test_token_file_is_private(server):
    token_file = server.data_dir / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert len(token_file.read_text().strip()) >= 32


def test_token_from_environment(start_server):
    server = start_server(env={"EX4D_TOKEN": "a-token-from-the-environment"})
    assert server.token == "a-token-from-the-environment"
    assert server.get("/v1/jobs").status_code == 200
    assert not (server.data_dir / "token").exists()


def test_no_cors_by_default(server):
    preflight = requests.options(server.url + "/v1/jobs", timeout=10, headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in {k.lower() for k in preflight.headers}
    plain = requests.get(server.url + "/v1/health", headers={"Origin": "http://evil.example"}, timeout=10)
    assert "access-control-allow-origin" not in {k.lower() for k in plain.headers}


def _serve(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EX4D_TOKEN"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "ex4d_engine.cli", "serve", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_non_loopback_bind_without_token_is_refused(tmp_path):
    proc = _serve("--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 2
    assert "refusing to bind '0.0.0.0'" in proc.stderr and "EX4D_TOKEN" in proc.stderr
    assert not (tmp_path / "d" / "token").exists()


def test_bad_gpus_flag_is_refused(tmp_path):
    proc = _serve("--gpus", "zero", "--port", "0", "--data-dir", str(tmp_path / "d"))
    assert proc.returncode == 2 and "--gpus must be" in proc.stderr
