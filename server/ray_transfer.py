"""Moving a job's files between the server's data dir and a Ray actor's node (``ex4d serve --ray``).

Two ways, the same calls:

* object store (default): the server ``ray.put``\\s each input; the actor fetches it only when its
  node does not hold the file yet (a scene's arrays stay on the node between jobs); the outputs
  come back as bytes in ``run_job``'s return value, which Ray keeps in its object store.
* shared folder (``--ray-shared-dir``, mounted at the same path on every node): inputs are copied to
  ``<shared>/<job>-<run>/in``, outputs written to ``.../out``; the folder is removed after the job.

Either way the server writes every output into its data dir under a temporary name and renames it
into place (``atomic_path``): a node never writes there, and nothing half-written looks finished.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional

from .artefacts import atomic_path


def _safe_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"bad transfer file name {name!r}")
    return name


# ---------------------------------------------------------------------- server side
class Transfer:
    def __init__(self, shared_dir: Optional[Path] = None):
        self.shared_dir = Path(os.path.realpath(shared_dir)) if shared_dir else None

    def send_inputs(self, files: dict[str, Path], run_key: str) -> tuple[dict[str, Any], Optional[str]]:
        """(inputs for the JobSpec, the shared output folder or None)."""
        for name in files:
            _safe_name(name)
        if self.shared_dir is None:
            import ray

            return {_safe_name(name): ray.put(path.read_bytes()) for name, path in files.items()}, None
        folder = self._folder(run_key)
        (folder / "in").mkdir(parents=True, exist_ok=True)
        (folder / "out").mkdir(exist_ok=True)
        inputs = {}
        for name, path in files.items():
            target = folder / "in" / _safe_name(name)
            shutil.copyfile(path, target)
            inputs[name] = str(target)
        return inputs, str(folder / "out")

    def receive_outputs(self, outputs: dict[str, Any], allowed: Iterable[str], final_dir: Path) -> list[str]:
        """Write the outputs named in ``allowed`` into ``final_dir`` atomically; returns the names written."""
        final_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in allowed:
            if name not in outputs:
                continue
            value = outputs[name]
            with atomic_path(final_dir / name) as tmp:
                if isinstance(value, (bytes, bytearray, memoryview)):
                    tmp.write_bytes(value)
                else:
                    shutil.copyfile(self._inside_shared(Path(value)), tmp)
            written.append(name)
        return written

    def clean(self, run_key: str) -> None:
        if self.shared_dir is not None:
            shutil.rmtree(self._folder(run_key), ignore_errors=True)

    def _folder(self, run_key: str) -> Path:
        return self.shared_dir / _safe_name(run_key)

    def _inside_shared(self, path: Path) -> Path:
        resolved = Path(os.path.realpath(path))
        if self.shared_dir is None or self.shared_dir not in resolved.parents:
            raise ValueError(f"an actor returned {path} outside the shared folder")
        return resolved


# ---------------------------------------------------------------------- actor side
def fetch_inputs(inputs: dict[str, Any], dest_dir: Path) -> None:
    """Put each input into ``dest_dir`` (atomically), unless the node already holds that file."""
    for name, source in inputs.items():
        target = dest_dir / _safe_name(name)
        if target.is_file():
            continue
        tmp = dest_dir / f".partial-{uuid.uuid4().hex[:8]}-{name}"
        try:
            if isinstance(source, str):
                shutil.copyfile(source, tmp)
            else:
                import ray

                tmp.write_bytes(ray.get(source))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


def send_outputs(work_dir: Path, names: Iterable[str], shared_out: Optional[str]) -> dict[str, Any]:
    """The job's finished files: bytes (object store) or paths under the shared output folder."""
    outputs: dict[str, Any] = {}
    for name in names:
        path = work_dir / name
        if not path.is_file():
            continue
        if shared_out is None:
            outputs[name] = path.read_bytes()
        else:
            target = Path(shared_out) / name
            shutil.copyfile(path, target)
            outputs[name] = str(target)
    return outputs
