"""Typed server settings: defaults, ``EX4D_*`` environment variables, then CLI flags."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Optional

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ex4d_engine.errors import InputError
from ex4d_engine.protocol import DEFAULT_HOST, DEFAULT_PORT

TOKEN_FILE_NAME = "token"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "ex4d"


class Settings(BaseSettings):
    """Everything the server needs to know; see docs/api.md."""

    model_config = SettingsConfigDict(env_prefix="EX4D_", extra="forbid")

    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    #: Explicit token (env EX4D_TOKEN); None = read or create ``<data_dir>/token``.
    token: Optional[SecretStr] = None
    token_file: Optional[Path] = None
    import_roots: list[Path] = Field(default_factory=list)
    models_dir: Optional[Path] = None
    #: "auto" (one worker, default device), "cpu", or GPU indices "0,1" (one worker per group).
    gpus: str = "auto"
    #: GPUs per worker: each worker owns a group of this many GPUs and runs the Wan generator as one
    #: sequence-parallel gang over them. Must divide the number of --gpus and Wan's 40 attention heads.
    group_size: int = Field(1, ge=1)
    preload: bool = False
    #: Ray cluster to run the jobs on ("auto" or the head's host:port); None = local worker processes.
    ray: Optional[str] = None
    #: A folder mounted at the same path on the server and every Ray node: job files travel through it
    #: instead of Ray's object store (docs/cluster.md).
    ray_shared_dir: Optional[Path] = None
    #: Keep this many Ray actors (GPU groups), waiting for GPUs if need be; None = as many as the cluster's GPUs allow.
    ray_actors: Optional[int] = Field(None, ge=1)
    cors_origins: list[str] = Field(default_factory=list)
    #: Host names (besides IP literals and localhost) the server answers to on a non-loopback bind.
    allowed_hosts: list[str] = Field(default_factory=list)

    #: Seconds a connection may take to send its request headers (slow or idle ones are closed).
    header_timeout_s: float = Field(10.0, gt=0)
    #: Seconds an idle keep-alive connection stays open.
    keep_alive_timeout_s: int = Field(5, ge=1)
    #: Connections served at once; more are answered 503.
    max_connections: int = Field(256, ge=8)

    max_upload_mb: int = Field(2048, ge=1)
    max_json_mb: int = Field(16, ge=1)
    max_frames: int = Field(1025, ge=1)
    max_pixels: int = Field(1920 * 1088, ge=1)
    #: A job does not start with less free space than this in the data dir.
    min_free_mb: int = Field(256, ge=0)
    #: A job interrupted by server restarts this many times is failed instead of re-queued.
    max_attempts: int = Field(2, ge=1)
    #: Seconds between a job's progress writes (the worker) and between SSE polls of the store.
    progress_interval_s: float = Field(0.1, gt=0)
    events_poll_s: float = Field(0.05, gt=0)

    # ------------------------------------------------------------------ derived
    @property
    def token_explicit(self) -> bool:
        return self.token is not None or self.token_file is not None

    def worker_devices(self) -> list[str]:
        """One entry per worker: "auto", "cpu", or its GPU group as CUDA indices ("0", "0,1")."""
        return [",".join(group) for group in self.gpu_groups()]

    def gpu_groups(self) -> list[list[str]]:
        """--gpus split into consecutive groups of --group-size (``[["auto"]]`` / ``[["cpu"]]`` without indices)."""
        from ex4d_engine.generation.gpu_groups import check_group_size

        spec = self.gpus.strip().lower()
        if spec in ("auto", "cpu"):
            if self.group_size != 1:
                raise InputError(f"--group-size {self.group_size} needs GPU indices: --gpus 0,1,... "
                                 f"(got --gpus {self.gpus!r})")
            return [[spec]]
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise InputError(f"--gpus must be 'auto', 'cpu' or GPU indices like '0,1', got {self.gpus!r}")
        parts = [str(int(p)) for p in parts]
        repeated = sorted({p for p in parts if parts.count(p) > 1}, key=int)
        if repeated:
            raise InputError(f"--gpus lists GPU {', '.join(repeated)} more than once: {self.gpus!r}")
        try:
            check_group_size(self.group_size)
        except InputError as exc:
            raise InputError(f"--group-size {self.group_size}: {exc.message}") from None
        if len(parts) % self.group_size:
            raise InputError(f"--group-size {self.group_size} does not divide the {len(parts)} GPUs of "
                             f"--gpus {','.join(parts)}")
        return [parts[i:i + self.group_size] for i in range(0, len(parts), self.group_size)]

    def check_ray(self) -> None:
        """With --ray the cluster's GPUs are used: refuse local GPU flags and a bad address or shared dir."""
        from ex4d_engine.generation.gpu_groups import check_group_size

        if not self.ray:
            if self.ray_shared_dir is not None or self.ray_actors is not None:
                raise InputError("--ray-shared-dir and --ray-actors need --ray ADDRESS")
            return
        address = self.ray.strip()
        if address != "auto" and not re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}", address):
            raise InputError(f"--ray must be 'auto' or the Ray head's HOST:PORT (as `ray start --head` prints), "
                             f"got {self.ray!r}")
        if self.gpus.strip().lower() != "auto":
            raise InputError(f"--gpus {self.gpus} picks local GPUs; with --ray the cluster's GPUs are used "
                             "(one actor per --group-size GPUs): drop --gpus")
        try:
            check_group_size(self.group_size)
        except InputError as exc:
            raise InputError(f"--group-size {self.group_size}: {exc.message}") from None
        if self.ray_shared_dir is not None and not self.ray_shared_dir.is_dir():
            raise InputError(f"--ray-shared-dir {self.ray_shared_dir} is not a directory")

    def check_bind(self) -> None:
        """Refuse a non-loopback bind unless the token was given explicitly."""
        if not is_loopback(self.host) and not self.token_explicit:
            raise InputError(
                f"refusing to bind {self.host!r}: it is not a loopback address and no token was given; "
                "set EX4D_TOKEN or pass --token-file"
            )


    def check_token_strength(self, token: str) -> None:
        """A non-loopback bind needs a token of at least 16 random bytes (22 characters of base64)."""
        if is_loopback(self.host):
            return
        if len(token) < MIN_TOKEN_CHARS or len(set(token)) < MIN_TOKEN_DISTINCT:
            raise InputError(
                f"refusing to bind {self.host!r} with a weak token ({len(token)} characters): a non-loopback "
                f"bind needs at least {MIN_TOKEN_CHARS} characters of random data (16 bytes), e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )


#: 16 random bytes are 22 characters of base64url; a run of one character is not random.
MIN_TOKEN_CHARS = 22
MIN_TOKEN_DISTINCT = 8


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def resolve_token(settings: Settings) -> str:
    """The bearer token: EX4D_TOKEN, --token-file, or ``<data_dir>/token`` (created 0600 at first start)."""
    if settings.token is not None:
        token = settings.token.get_secret_value().strip()
        if not token:
            raise InputError("EX4D_TOKEN is empty")
        return token
    path = settings.token_file or settings.data_dir / TOKEN_FILE_NAME
    if settings.token_file is None and not path.exists():
        _create_token_file(path)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise InputError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise InputError(f"token file {path} is empty")
    return token


def _create_token_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        os.fchmod(fd, 0o600)  # the umask cannot widen it
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never overwrite a token another process just made
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
