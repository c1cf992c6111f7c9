"""The one job protocol of ex4d: what the add-on, scripts, the HTTP server and the worker say to each other.

Every fact of the protocol is declared here once, as typed objects with ``to_dict`` / ``from_dict``:
the defaults (port, URL), the states of jobs, scenes and takes, the generators (:data:`GENERATORS`),
the options of a scene and of a shot, what a job looks like from outside, and a take (one generated
shot as the add-on keeps it). The server's pydantic models are built from these dataclasses
(``server/schemas.py``), the worker reads job rows through them, and the add-on gets this module
vendored at build time.

Trajectories travel as ``ex4d.trajectory`` v1 documents (``contract.py``): parsed and validated once
where they come in (HTTP: ``POST /v1/jobs``; files: ``interchange.load_trajectory``), then stored
canonically as ``Trajectory.to_dict()``.

Standard library only (no numpy, torch or bpy); it imports nothing but ``.errors``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import InputError

API_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8420
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


# ---------------------------------------------------------------------- states
class JobState(str, enum.Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_JOB_STATES


TERMINAL_JOB_STATES = frozenset({JobState.succeeded, JobState.failed, JobState.cancelled})


class JobKind(str, enum.Enum):
    recon = "recon"        # clip -> scene (depth, DW-mesh, package)
    generate = "generate"  # scene + trajectory -> conditioning -> generated video


class SceneState(str, enum.Enum):
    pending = "pending"
    ready = "ready"
    failed = "failed"
    cancelled = "cancelled"


#: What a finished recon job makes of its scene.
SCENE_STATE_OF_RECON = {JobState.succeeded: SceneState.ready, JobState.failed: SceneState.failed,
                        JobState.cancelled: SceneState.cancelled}


#: A take is a job seen from Blender: ``new`` until the engine accepted it, then the job's state.
TakeState = enum.Enum("TakeState", [("new", "new")] + [(s.name, s.value) for s in JobState], type=str)
TakeState.terminal = property(lambda self: self.value in {s.value for s in TERMINAL_JOB_STATES})


# ---------------------------------------------------------------------- generators
@dataclass(frozen=True)
class GeneratorSpec:
    """A generator the engine can run. The registry (``generation/registry.py``) loads it by these names.

    Attributes:
        name: what jobs, the CLI and the add-on call it.
        label / description: how the add-on and ``ex4d models`` show it.
        loader: ``"module:function"`` building the resident generator: ``f(models_dir, profile) -> Generator``.
        weights_status: ``"module:function"`` -> ``{"present": [...], "missing": [...]}`` without reading
            weights; None when it needs none.
        preview: True for a classical stand-in whose output is a preview, not the model's result.
    """

    name: str
    label: str
    description: str
    loader: str
    weights_status: Optional[str] = None
    preview: bool = False


GENERATORS: dict[str, GeneratorSpec] = {spec.name: spec for spec in (
    GeneratorSpec("draft", "Draft (preview)",
                  "classical hole filling in seconds on any machine; a preview, not the 14B model",
                  "ex4d_engine.generation.draft:load_generator", preview=True),
    GeneratorSpec("wan", "Wan 2.1 + EX-4D",
                  "Wan2.1-I2V-14B with the EX-4D adapter and LoRA: needs the weights and a GPU on the engine",
                  "ex4d_engine.generation.wan:load_generator", "ex4d_engine.generation.wan:models_status"),
)}
DEFAULT_GENERATOR = "draft"


def is_preview_generator(name: Optional[str]) -> bool:
    """True when generator ``name`` (None: the default) makes a preview, not the model's output."""
    spec = GENERATORS.get(name or DEFAULT_GENERATOR)
    return bool(spec and spec.preview)


@dataclass(frozen=True)
class SpeedSpec:
    """A speed preset of the Wan generator as users see it; its sampler settings are in
    ``ex4d_engine/generation/wan/speed.py`` (``PRESETS``, same names).

    Attributes:
        expected_s: warm whole-shot seconds at EX-4D's settings (49 x 512^2) on one Hopper GPU;
            ``measured`` says whether bench/speed_presets.py measured it (one H200, torchao FP8 for
            default/fast/turbo, docs/PERFORMANCE.md "Speed presets") or it is an estimate.
    """

    name: str
    summary: str
    expected_s: float
    measured: bool

    @property
    def label(self) -> str:
        return f"{self.name.capitalize()} (~{self.expected_s:.0f} s)"


SPEED_PRESETS: dict[str, SpeedSpec] = {spec.name: spec for spec in (
    SpeedSpec("exact", "the seed's sampling, bf16 (25 steps, CFG 5)", 43.0, True),
    SpeedSpec("original", "as exact, with EX-4D's DiffSynth fp32 paths (slowest, reference)", 53.0, True),
    SpeedSpec("default", "FP8 linears, same 25 steps and CFG", 33.0, True),
    SpeedSpec("fast", "FP8 + MagCache: 9 of 25 steps run the DiT blocks, the rest reuse them", 14.0, True),
    SpeedSpec("turbo", "lightx2v 4-step distill LoRA, no CFG, FP8 (quality with EX-4D NOT verified)", 5.0, True),
)}
DEFAULT_SPEED = "default"


# ---------------------------------------------------------------------- field rules
def option(default: Any = None, *, doc: str, ge: Optional[float] = None, le: Optional[float] = None,
           gt: Optional[float] = None, lt: Optional[float] = None, max_length: Optional[int] = None,
           pattern: Optional[str] = None, choices: Optional[tuple] = None):
    """A dataclass field with its rules: :func:`check_fields` applies them, the server's schema shows them."""
    rules = {k: v for k, v in dict(ge=ge, le=le, gt=gt, lt=lt, max_length=max_length, pattern=pattern,
                                   choices=choices).items() if v is not None}
    return field(default=default, metadata={"doc": doc, **rules})


def required(*, doc: str, **rules: Any):
    """A field without default, with its rules (see :func:`option`)."""
    return field(metadata={"doc": doc, **rules})


#: Ids as the server makes them: ``s_`` scenes, ``j_`` jobs, then 16 hex digits.
SCENE_ID_PATTERN = r"s_[0-9a-f]{16}"
JOB_ID_PATTERN = r"j_[0-9a-f]{16}"


def check_fields(obj: Any, prefix: str = "") -> None:
    """Raise :class:`InputError` naming the first field of ``obj`` that breaks its rules."""
    for f in dataclasses.fields(obj):
        value, rules, name = getattr(obj, f.name), f.metadata, prefix + f.name
        if value is None:
            continue
        if "choices" in rules and value not in rules["choices"]:
            raise InputError(f"{name} must be one of {', '.join(map(str, rules['choices']))}; got {value!r}", name)
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            continue
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"{name} must be a finite number, got {value!r}", name)
            for rule, ok, word in (("ge", value.__ge__, ">="), ("le", value.__le__, "<="),
                                   ("gt", value.__gt__, ">"), ("lt", value.__lt__, "<")):
                if rule in rules and not ok(rules[rule]):
                    raise InputError(f"{name} must be {word} {rules[rule]:g}, got {value!r}", name)
        if isinstance(value, str):
            if "max_length" in rules and len(value) > rules["max_length"]:
                raise InputError(f"{name} is longer than {rules['max_length']} characters", name)
            if "pattern" in rules and not re.fullmatch(rules["pattern"], value):
                raise InputError(f"{name} {value!r} must match {rules['pattern']}", name)


def _from_dict(cls, data: Any, where: str):
    """Build dataclass ``cls`` from a JSON object: unknown keys and wrong types are errors naming the key."""
    if not isinstance(data, dict):
        raise InputError(f"{where} must be a JSON object, got {type(data).__name__}", where)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{where} has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}",
                         f"{where}.{unknown[0]}")
    return cls(**data)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Record:
    """``to_dict`` / ``from_dict`` for the protocol's dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Any, where: Optional[str] = None):
        return _from_dict(cls, data, where or cls.__name__)


# ---------------------------------------------------------------------- options
@dataclass(frozen=True)
class SceneOptions(_Record):
    """How a clip is reconstructed (``POST /v1/scenes`` form fields; the recon job's options)."""

    num_frames: int = option(49, doc="frames taken from the start of the clip (EX-4D: 49)", ge=1, le=100_000)
    fov_deg: Optional[float] = option(doc="horizontal field of view of the source camera, degrees", gt=0, lt=180)
    focal_px: Optional[float] = option(doc="source focal length in working-resolution pixels", gt=0, le=1e6)
    only_first_frame: bool = option(False, doc="static scene: frame 0's mesh for every camera")
    depth_source: Optional[str] = option(doc="'file' (uploaded depth) or a depth backend name; None = default",
                                         max_length=64, pattern=r"[a-z0-9_-]+")

    def check(self) -> "SceneOptions":
        check_fields(self)
        if self.fov_deg is not None and self.focal_px is not None:
            raise InputError("give either fov_deg or focal_px, not both", "fov_deg")
        return self


@dataclass(frozen=True)
class StereoOptions(_Record):
    """Blender's stereo camera settings in engine depth units; the job's trajectory is the rig camera."""

    interocular: float = required(doc="distance between the eyes, depth units", gt=0, le=1e6)
    convergence: float = required(doc="zero-parallax distance, depth units", gt=0, le=1e9)
    mode: str = option("OFFAXIS", doc="Blender's convergence mode", choices=("OFFAXIS", "PARALLEL", "TOE"))
    pivot: str = option("LEFT", doc="which eye the rig camera is", choices=("LEFT", "CENTER", "RIGHT"))
    sensor_ratio: float = option(1.0, doc="sensor_height / sensor_width for sensor fit VERTICAL, else 1 "
                                          "(Blender's off-axis shift rule)", gt=0, le=100)
    layout: str = option("sbs", doc="packing of result.mp4 (st3d box)", choices=("sbs", "sbs_half", "tb"))
    generation: str = option("joint", doc="joint: the second eye re-uses the first; independent: for comparison",
                             choices=("joint", "independent"))

    def check(self, prefix: str = "options.stereo.") -> "StereoOptions":
        check_fields(self, prefix)
        return self


@dataclass(frozen=True)
class JobOptions(_Record):
    """How a shot is generated (``POST /v1/jobs`` ``options``; stored on the job, shown on the take)."""

    generator: str = option(DEFAULT_GENERATOR, doc="which generator fills the hidden parts",
                            choices=tuple(GENERATORS))
    seed: int = option(0, doc="every random choice (noise, mask erosion) follows it", ge=0, le=2 ** 32 - 1)
    steps: Optional[int] = option(doc="denoising steps; None = the generator's default", ge=1, le=1000)
    profile: Optional[str] = option(doc="VRAM profile of the generator (full, balanced, low); None = full",
                                    max_length=64, pattern=r"[A-Za-z0-9_.-]+")
    speed: Optional[str] = option(doc="speed preset of the wan generator (docs/generation.md); None = default",
                                  choices=tuple(SPEED_PRESETS))
    prompt: Optional[str] = option(doc="text prompt; None = the generator's default", max_length=4000)
    negative_prompt: Optional[str] = option(doc="negative prompt; None = the generator's default", max_length=4000)
    stereo: Optional[StereoOptions] = option(doc="a stereo take: both eyes of the trajectory's camera "
                                                 "(docs/stereo.md); None = mono")

    @classmethod
    def from_dict(cls, data: Any, where: Optional[str] = "options") -> "JobOptions":
        options = _from_dict(cls, data, where)
        if isinstance(options.stereo, dict):
            options = dataclasses.replace(options, stereo=StereoOptions.from_dict(options.stereo, f"{where}.stereo"))
        return options

    def check(self) -> "JobOptions":
        check_fields(self, "options.")
        if self.stereo is not None:
            self.stereo.check()
        return self


@dataclass(frozen=True)
class JobRequest(_Record):
    """The body of ``POST /v1/jobs``: re-shoot a ready scene along a trajectory."""

    scene_id: str = required(doc="a ready scene", pattern=SCENE_ID_PATTERN)
    trajectory: dict[str, Any] = required(doc="an ex4d.trajectory v1 document (ex4d_engine/contract.py)")
    options: JobOptions = field(default_factory=JobOptions)

    def check(self) -> "JobRequest":
        check_fields(self)
        self.options.check()
        return self

    @classmethod
    def from_dict(cls, data: Any, where: str = "body") -> "JobRequest":
        request = _from_dict(cls, data, where)
        if isinstance(request.options, JobOptions):
            return request
        return dataclasses.replace(request, options=JobOptions.from_dict(request.options, "options"))


# ---------------------------------------------------------------------- what the engine reports
@dataclass(frozen=True)
class ErrorInfo(_Record):
    """Why a job or scene failed: a code of the error table (``errors.py``) and the message for the artist."""

    error: str
    message: str
    field: Optional[str] = None


@dataclass(frozen=True)
class ConditioningUrls(_Record):
    colour: Optional[str] = None
    mask: Optional[str] = None


@dataclass(frozen=True)
class EyeUrls(_Record):
    """A succeeded stereo job's two eye videos, each on its own (``GET /v1/jobs/{id}/result/{eye}``)."""

    left: Optional[str] = None
    right: Optional[str] = None


@dataclass(frozen=True)
class Job(_Record):
    """A job as ``GET /v1/jobs/{id}`` answers it. Times are ISO 8601 UTC strings."""

    id: str
    kind: JobKind
    scene_id: str
    state: JobState
    stage: str
    progress: float
    attempts: int
    created_at: str
    options: dict[str, Any]  # JobOptions (generate) or SceneOptions (recon), as dicts
    eta_s: Optional[float] = None
    queue_position: Optional[int] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    error: Optional[ErrorInfo] = None
    num_frames: Optional[int] = None
    fps: Optional[float] = None
    result_url: Optional[str] = None
    conditioning_urls: Optional[ConditioningUrls] = None
    eye_urls: Optional[EyeUrls] = None  # stereo jobs, once succeeded; result_url is the packed video
    # generate jobs: True when the result is a preview (the draft generator), not the model's output
    preview: Optional[bool] = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "job") -> "Job":
        job = _from_dict(cls, data, where)
        return dataclasses.replace(
            job, kind=JobKind(job.kind), state=JobState(job.state),
            error=ErrorInfo.from_dict(job.error) if isinstance(job.error, dict) else job.error,
            conditioning_urls=(ConditioningUrls.from_dict(job.conditioning_urls)
                               if isinstance(job.conditioning_urls, dict) else job.conditioning_urls),
            eye_urls=EyeUrls.from_dict(job.eye_urls, f"{where}.eye_urls") if isinstance(job.eye_urls, dict)
            else job.eye_urls)


@dataclass(frozen=True)
class SceneMetadata(_Record):
    """What a finished reconstruction knows about its scene (contract v1 units)."""

    width: int
    height: int
    fps: float
    num_frames: int
    K: list[list[float]]  # 3x3 source intrinsics, pixels, corner-origin
    depth_source: str
    intrinsics_source: str = "default"
    depth_units: str = "relative"
    scene_scale: float = 1.0
    only_first_frame: bool = False


@dataclass(frozen=True)
class Scene(_Record):
    """A scene as ``GET /v1/scenes/{id}`` answers it."""

    id: str
    state: SceneState
    created_at: str
    recon_job_id: str
    source_name: str
    options: SceneOptions
    error: Optional[ErrorInfo] = None
    metadata: Optional[SceneMetadata] = None  # set when ready
    source_trajectory: Optional[dict[str, Any]] = None  # ex4d.trajectory v1 of the source camera, when ready
    package_url: Optional[str] = None

    @classmethod
    def from_dict(cls, data: Any, where: str = "scene") -> "Scene":
        scene = _from_dict(cls, data, where)
        return dataclasses.replace(
            scene, state=SceneState(scene.state), options=SceneOptions.from_dict(scene.options, "options"),
            error=ErrorInfo.from_dict(scene.error) if isinstance(scene.error, dict) else scene.error,
            metadata=SceneMetadata.from_dict(scene.metadata) if isinstance(scene.metadata, dict) else scene.metadata)


@dataclass(frozen=True)
class Take(_Record):
    """One generated shot as the add-on keeps it (stored in the .blend, listed in the takes panel)."""

    key: str
    state: TakeState = TakeState.new
    job_id: str = ""
    scene_id: str = ""
    options: JobOptions = field(default_factory=JobOptions)
    camera: str = ""
    frame_start: int = 1
    frame_end: int = 1
    fps: float = 0.0
    stage: str = ""
    progress: float = 0.0
    eta_s: Optional[float] = None
    message: str = ""
    result_path: str = ""

    def updated_from(self, job: Job) -> "Take":
        """This take after the engine reported ``job``."""
        message = job.error.message if job.error else self.message
        return dataclasses.replace(self, job_id=job.id, state=TakeState(job.state.value), stage=job.stage,
                                   progress=job.progress, eta_s=job.eta_s, message=message)
