"""Find model weights offline: a local folder in the Hugging Face layout, or the Hugging Face cache.

Nothing here downloads. A model is looked for, in order, in
``<models_dir>/<name>``, ``<models_dir>/<owner>/<name>`` (``models_dir`` from the caller or
``$EX4D_MODELS_DIR``) and the Hugging Face cache (``$HF_HUB_CACHE`` / ``$HF_HOME``), read with
``local_files_only``. Missing or broken weights raise :class:`ResourceError` naming the folder
and the download command a user with internet would run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ResourceError
from .base import ComponentStatus, check_frames, resolve_device

MODELS_DIR_ENV = "EX4D_MODELS_DIR"


@dataclass(frozen=True)
class ModelWeights:
    """A model repository on the Hugging Face Hub and what a usable local copy must hold.

    Attributes:
        repo_id: "owner/name" on the Hub.
        licence: the licence of the weights, as the model card states it.
        config_files: files that must exist and parse as JSON (relative to the folder).
        weight_files: at least one of these must exist and be non-empty.
        required_files: every one of these must exist and be non-empty (multi-part models).
        include: ``--include`` patterns for the download command (empty: the whole repository).
        gated: the Hub asks users to accept a licence before downloading.
    """

    repo_id: str
    licence: str
    config_files: tuple[str, ...] = ("config.json",)
    weight_files: tuple[str, ...] = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    required_files: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    gated: bool = False

    @property
    def folder_name(self) -> str:
        return self.repo_id.split("/")[-1]

    def download_command(self, models_dir: Optional[str | os.PathLike] = None) -> str:
        target = download_target(self.folder_name, models_dir)
        include = (" --include " + " ".join(f'"{p}"' for p in self.include)) if self.include else ""
        login = "hf auth login (accept the licence on the model page first); " if self.gated else ""
        return f"{login}hf download {self.repo_id}{include} --local-dir {target}"


@dataclass(frozen=True)
class WeightsLocation:
    """Where a model was found (``folder``) or why not (``problem``), and every place looked at."""

    folder: Optional[Path]
    searched: tuple[str, ...]
    problem: str = ""

    @property
    def found(self) -> bool:
        return self.folder is not None


#: Where download hints put weights when neither --models-dir nor $EX4D_MODELS_DIR says (never a bare "/...").
SUGGESTED_MODELS_DIR = "~/ex4d-models"


def download_target(folder_name: str, models_dir: Optional[str | os.PathLike] = None) -> str:
    """The ``--local-dir`` of a download hint: inside the models folder in use, or the suggested one."""
    root = models_dir_or_none(models_dir)
    return str(root / folder_name) if root else f"{SUGGESTED_MODELS_DIR}/{folder_name}"


def models_dir_note(models_dir: Optional[str | os.PathLike] = None) -> str:
    """One line telling how to point ex4d at the suggested folder, when nothing is set ("" otherwise)."""
    if models_dir_or_none(models_dir):
        return ""
    return (f"(no models folder is set: download into {SUGGESTED_MODELS_DIR} as shown, then pass "
            f"--models-dir {SUGGESTED_MODELS_DIR} or export {MODELS_DIR_ENV}={SUGGESTED_MODELS_DIR})")


def models_dir_or_none(models_dir: Optional[str | os.PathLike]) -> Optional[Path]:
    """The caller's models folder, else ``$EX4D_MODELS_DIR``, else None (Hugging Face cache only)."""
    value = models_dir if models_dir else os.environ.get(MODELS_DIR_ENV)
    return Path(value).expanduser() if value else None


def folder_problem(folder: Path, spec: ModelWeights) -> str:
    """Why ``folder`` is not a usable copy of ``spec`` ("" if it is)."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    for name in spec.config_files:
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"{path} is not valid JSON ({exc})"
    for name in spec.required_files:
        path = folder / name
        if not path.is_file() or path.stat().st_size == 0:
            return f"{path} is missing or empty"
    present = [folder / name for name in spec.weight_files if (folder / name).is_file()]
    if not present:
        return f"{folder} has no weights file (looked for {', '.join(spec.weight_files)})"
    empty = [p for p in present if p.stat().st_size == 0]
    if len(empty) == len(present):
        return f"{empty[0]} is empty"
    return ""


def hf_cache_dir() -> Optional[str]:
    """The HF cache folder from the environment *now* (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None  # huggingface_hub's default (~/.cache/huggingface/hub)


def hf_cache_folder(repo_id: str) -> Optional[Path]:
    """The cached snapshot of ``repo_id`` in the Hugging Face cache, or None; never touches the network."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cache_dir = hf_cache_dir()
    try:
        hit = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
        if not isinstance(hit, str):
            hit = try_to_load_from_cache(repo_id, "model_index.json", cache_dir=cache_dir)
    except Exception:  # a malformed cache must not break listing; it just counts as absent
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def locate(spec: ModelWeights, models_dir: Optional[str | os.PathLike] = None) -> WeightsLocation:
    """The first usable copy of ``spec``; if none, the first problem met and every place searched."""
    candidates: list[Path] = []
    root = models_dir_or_none(models_dir)
    if root is not None:
        candidates += [root / spec.folder_name, root / spec.repo_id]
    cached = hf_cache_folder(spec.repo_id)
    if cached is not None:
        candidates.append(cached)
    problems = []
    for folder in candidates:
        problem = folder_problem(folder, spec)
        if not problem:
            return WeightsLocation(folder, tuple(map(str, candidates)))
        if folder.exists():  # a folder that exists but is broken is the interesting failure
            problems.append(problem)
    searched = tuple(map(str, candidates)) or ("the Hugging Face cache",)
    if not problems:
        where = " or ".join(searched) if candidates else "the Hugging Face cache (no --models-dir / $EX4D_MODELS_DIR given)"
        problems.append(f"not found in {where}")
    return WeightsLocation(None, searched, problems[0])


def weights_status(spec: ModelWeights, models_dir: Optional[str | os.PathLike] = None) -> ComponentStatus:
    """What ``ex4d models`` shows for one set of weights: found where, or where it looked and how to get it."""
    found = locate(spec, models_dir)
    return ComponentStatus(
        name=f"weights {spec.repo_id}", found=found.found,
        location=str(found.folder) if found.found else " | ".join(found.searched),
        licence=spec.licence, get_command=spec.download_command(models_dir), problem=found.problem)


def require(spec: ModelWeights, models_dir: Optional[str | os.PathLike] = None, *, what: str = "") -> Path:
    """The folder of a usable copy of ``spec``, or :class:`ResourceError` saying what is wrong and how to fix it."""
    found = locate(spec, models_dir)
    if found.folder is None:
        label = what or f"model {spec.repo_id}"
        raise ResourceError(f"{label} weights unusable: {found.problem}. "
                            f"Get them with: {spec.download_command(models_dir)}")
    return found.folder


def load_error(spec: ModelWeights, folder: Path, exc: BaseException,
               models_dir: Optional[str | os.PathLike] = None) -> ResourceError:
    """A loader failure (truncated/corrupt file, wrong config) as a ResourceError naming the folder."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ResourceError(f"weights in {folder} could not be loaded ({type(exc).__name__}: {detail[:300]}); "
                         f"they may be corrupt or incomplete. Re-download with: "
                         f"{spec.download_command(models_dir)}")


class WeightsBackend:
    """What every backend reading one Hugging Face weights folder shares: its component list, and
    checking the frames and finding the weights before anything heavy is imported."""

    name: str
    weights: ModelWeights

    def components(self, settings) -> list[ComponentStatus]:
        return [weights_status(self.weights, settings.models_dir)]

    def locate(self, frames, settings) -> tuple[Path, str]:
        """(weights folder, torch device); a missing model or bad frames fail here, fast."""
        check_frames(frames)
        folder = require(self.weights, settings.models_dir, what=f"depth backend '{self.name}':")
        return folder, resolve_device(settings.device)
