"""Layer rules: the worker process never loads FastAPI; the HTTP process never loads torch or the
engine pipeline; nothing in server/ imports bpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         cwd=REPO, capture_output=True, text=True, check=True, timeout=120).stdout
    return set(out.split())


def test_worker_modules_do_not_import_fastapi():
    loaded = _loaded_after("import server.worker, server.tasks, server.supervisor, server.job_context, ex4d_engine.generation.registry")
    assert not {m for m in loaded if m.split(".")[0] in ("fastapi", "starlette", "uvicorn", "torch")}


def test_http_app_does_not_import_torch_or_the_pipeline(tmp_path):
    loaded = _loaded_after(f"from server.app import create_app\nfrom server.settings import Settings\n"
                           f"create_app(Settings(data_dir={str(tmp_path)!r}))")
    assert "torch" not in loaded and "ex4d_engine.pipeline" not in loaded


def test_no_bpy_in_server():
    for path in (REPO / "server").rglob("*.py"):
        text = path.read_text()
        assert "import bpy" not in text and "from bpy" not in text, path
