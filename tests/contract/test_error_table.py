"""The one error table: every code has one class; CLI, server and docs all follow it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ex4d_engine import errors
from ex4d_engine.contract import Trajectory, TrajectoryError
from ex4d_engine.errors import (ERROR_CLASSES, ERROR_TABLE, InputError, InternalError, NotFoundError, ResourceError,
                                as_ex4d_error, error_from_body, markdown_table)

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("doc", ["README.md", "docs/api.md"])
def test_docs_show_exactly_the_table(doc):
    text = (REPO / doc).read_text()
    shown = re.search(r"<!-- error-table -->\n(.*?)\n<!-- /error-table -->", text, re.S)
    assert shown, f"{doc} has no error-table block"
    assert shown.group(1) == markdown_table()


def test_every_row_has_its_class_and_the_class_carries_the_row():
    assert [kind.code for kind in ERROR_TABLE] == list(errors.KINDS)
    for kind in ERROR_TABLE:
        if kind.code in errors.ADDON_ONLY_CODES and kind.code not in ERROR_CLASSES:
            continue  # raised by the add-on by code
        cls = ERROR_CLASSES[kind.code]
        assert (cls.code, cls.exit_code, cls.http_status) == (kind.code, kind.exit_code, kind.http_status)
        assert kind.blender_level in ("ERROR", "WARNING", "INFO")


def test_exit_codes_are_unique_per_meaning():
    # one exit code may only be shared by codes that mean the same to a shell script (bad input, too large)
    by_exit = {}
    for kind in ERROR_TABLE:
        if kind.exit_code is not None:
            by_exit.setdefault(kind.exit_code, []).append(kind.code)
    assert by_exit == {2: ["invalid_input", "too_large"], 3: ["not_found"], 4: ["resource_unavailable"],
                       130: ["cancelled"], 1: ["internal_error"]}


def test_trajectory_errors_are_input_errors():
    with pytest.raises(InputError) as info:
        Trajectory.from_dict({"format": "ex4d.trajectory", "version": 2})
    assert isinstance(info.value, TrajectoryError) and info.value.code == "invalid_input"
    assert info.value.exit_code == 2 and info.value.http_status == 422


def test_unexpected_exceptions_become_bugs_without_paths_or_tracebacks():
    error = as_ex4d_error(KeyError("frames"), "render")
    assert isinstance(error, InternalError) and error.is_bug
    assert error.message.startswith("A bug in ex4d: KeyError during render: 'frames'")
    own = NotFoundError("scene 's_1' not found")
    assert as_ex4d_error(own) is own and not own.is_bug


def test_error_bodies_come_back_typed():
    error = error_from_body({"error": "resource_unavailable", "message": "no GPU", "field": None}, 503)
    assert type(error) is ResourceError and error.message == "no GPU"
    newer = error_from_body({"error": "some_future_code", "message": "?"}, 404)
    assert type(newer) is NotFoundError  # unknown code: the class of its HTTP status
    assert error_from_body("not json", 500).code == "bad_response"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ex4d_engine.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_exit_codes_follow_the_table(tmp_path):
    missing = _cli("trajectory", "validate", str(tmp_path / "nope.json"))
    assert missing.returncode == NotFoundError.exit_code == 3
    assert missing.stderr == f"ex4d: error: trajectory file not found: {tmp_path / 'nope.json'}\n"
    (tmp_path / "bad.json").write_text('{"format": "ex4d.trajectory", "version": 7}')
    bad = _cli("trajectory", "validate", str(tmp_path / "bad.json"))
    assert bad.returncode == InputError.exit_code == 2 and "version must be 1, got 7" in bad.stderr
    assert "Traceback" not in bad.stderr  # a user's mistake is not reported as a bug


def test_every_code_the_addon_uses_is_a_row_of_the_table():
    used = set()
    for path in (REPO / "ex4d_blender").rglob("*.py"):
        used |= set(re.findall(r'code="([a-z_]+)"', path.read_text()))
    assert used, "the add-on names its error codes as code=\"...\""
    assert used <= set(errors.KINDS), sorted(used - set(errors.KINDS))
