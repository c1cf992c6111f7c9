"""GPU groups: the Wan generator run by a torchrun process gang, CFG-parallel x Ulysses.

A group of N GPUs is N processes started by ``torchrun`` (one per GPU), each holding the whole
pipeline. Each DiT forward is split over them by :mod:`.dit_parallel` (PyTorch's own collectives,
compiled blocks kept): with guidance the two branches run on the two halves of the group and
Ulysses splits the tokens inside each half; without guidance (a distilled preset) Ulysses splits
them over the whole group. The caller (the server's worker of that group, a benchmark) owns a
:class:`GangGenerator`: it starts the gang, talks to rank 0 over a local socket, and implements
the usual ``Generator`` protocol. Rank 0 broadcasts each request to the other ranks, every rank
runs the same steps (cancel decisions are broadcast too, so no rank leaves a collective alone),
and rank 0 sends back progress and the video. A gang that dies fails the job it ran and is
started again for the next one. Without CUDA the gang runs on gloo (CPU tests).

This module imports no torch at module level. The group rules (sizes, :data:`MULTICAST_OFF_ENV`) live in
:mod:`ex4d_engine.generation.gpu_groups`; NVLink multicast stays off in every process started here.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Client, Listener
from typing import Optional

from ...errors import Ex4dError, InputError, JobCancelledError, ResourceError, error_from_body
from ...protocol import GENERATORS
from ..gpu_groups import MULTICAST_OFF_ENV, WAN_ATTENTION_HEADS, check_group_size, group_sizes  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

#: The socket's shared secret travels in the environment, never on the command line.
AUTHKEY_ENV = "EX4D_GANG_AUTHKEY"
#: Generators a gang can run: "wan" (USP over NCCL) or "draft" (gloo on CPU: tests the gang itself).
GANG_GENERATORS = tuple(GENERATORS)  # any registered generator can run as a gang
START_TIMEOUT_S = 900.0  # loading 14B weights on every rank takes minutes
POLL_S = 0.05


@dataclass(frozen=True)
class GangSpec:
    """What a gang loads.

    Attributes:
        size: processes (= GPUs of the group; the caller sets CUDA_VISIBLE_DEVICES to them).
        generator: "wan" or "draft".
        models_dir: the Wan model folder (wan only).
        profile: VRAM profile (wan only).
        tiny: ``models_dir`` holds tiny random models (:mod:`.tiny_models`): register them first.
        compile_dit: torch.compile the DiT blocks on every rank; None: as a single GPU would
            (on for CUDA with the ``full`` profile). The all-to-alls are traced into the blocks.
    """

    size: int
    generator: str = "wan"
    models_dir: Optional[str] = None
    profile: Optional[str] = None
    tiny: bool = False
    compile_dit: Optional[bool] = None

    def check(self) -> None:
        if self.generator not in GANG_GENERATORS:
            raise InputError(f"a GPU group runs one of {', '.join(GANG_GENERATORS)}, not {self.generator!r}")
        check_group_size(self.size)
        if self.generator == "wan" and not self.models_dir:
            raise InputError("the Wan generator needs a models dir (--models-dir)")


def start_gang(name: str, size: int, models_dir: Optional[str], profile: Optional[str]) -> "GangGenerator":
    """The registry's gang runner (``registry.GANG_RUNNER``): generator ``name`` over ``size`` GPUs."""
    return GangGenerator(GangSpec(size=size, generator=name, models_dir=models_dir, profile=profile))


def gang_command(spec: GangSpec, address: str) -> list[str]:
    """``torchrun`` (as ``python -m torch.distributed.run``, the same interpreter) for ``spec``.

    ``address``: rank 0's Unix socket; an abstract one (leading NUL) is written with a leading "@".
    """
    spec.check()
    address = "@" + address[1:] if address.startswith("\0") else address
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={spec.size}",
               "--max-restarts=0", "-m", __name__, "--address", address, "--generator", spec.generator]
    if spec.models_dir:
        command += ["--models-dir", spec.models_dir]
    if spec.profile:
        command += ["--profile", spec.profile]
    if spec.tiny:
        command.append("--tiny")
    if spec.compile_dit is not None:
        command.append("--compile-dit" if spec.compile_dit else "--no-compile-dit")
    return command


def gang_env(authkey: bytes, base: Optional[dict] = None) -> dict[str, str]:
    """The gang's environment: ``base`` (default: ours) + multicast off + the socket secret."""
    env = dict(os.environ if base is None else base)
    env.update(MULTICAST_OFF_ENV)
    env[AUTHKEY_ENV] = authkey.hex()
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default; set it so it does not warn
    return env


# ---------------------------------------------------------------------- caller side
class GangGenerator:
    """A ``Generator`` whose work runs in a torchrun gang; one per GPU group, resident across jobs."""

    def __init__(self, spec: GangSpec, start_timeout_s: float = START_TIMEOUT_S):
        spec.check()
        self.spec = spec
        self.name = spec.generator
        self.start_timeout_s = start_timeout_s
        self.process: Optional[subprocess.Popen] = None
        self.conn = None
        self.info: dict = {}
        self.start()

    def start(self) -> None:
        """Start the gang and wait until every rank has loaded its generator."""
        authkey = secrets.token_bytes(32)
        # An abstract socket (Linux): no file to clean up, no path-length limit from a deep TMPDIR.
        address = f"\0ex4d-gang-{os.getpid()}-{secrets.token_hex(8)}"
        listener = Listener(address, family="AF_UNIX", authkey=authkey)
        try:
            self.process = subprocess.Popen(gang_command(self.spec, address), env=gang_env(authkey),
                                            start_new_session=True, preexec_fn=_die_with_parent)
            self.conn = self._accept(listener)
            message = self._receive(self.start_timeout_s, "loading")
            if message[0] != "ready":
                raise self._error_from(message, "loading")
            self.info = message[1]
            log.info("GPU group gang ready: %s", self.info)
        except BaseException:
            self.close()
            raise
        finally:
            listener.close()

    def generate(self, request, progress=None, should_cancel=None):
        """Run ``request`` on the gang; progress and cancel work as in-process."""
        if self.process is None or self.process.poll() is not None:
            self.close()
            self.start()  # the last gang died: a fresh one for this job
        self._send(("generate", request), "generation")
        stop: Optional[BaseException] = None  # set once we asked the gang to stop this request
        while True:
            message = self._receive(None, "generation", idle=lambda: None if stop else self._check(should_cancel))
            kind = message[0]
            if kind == "progress":
                if progress is not None and stop is None:
                    try:
                        progress(message[1], message[2])
                    except BaseException as exc:  # noqa: BLE001 - a cancel (or server stop) raised by the caller
                        stop = exc
                        self._send(("cancel",), "generation")
            elif kind == "stop_requested":
                stop = message[1]
                self._send(("cancel",), "generation")
            elif kind == "result":
                if stop is not None:
                    raise stop
                return message[1]
            elif kind == "cancelled":
                raise stop if stop is not None else JobCancelledError("cancelled by the user")
            else:
                raise self._error_from(message, "generation")

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the gang (politely, then by signal)."""
        if self.conn is not None:
            try:
                self.conn.send(("stop",))
            except (OSError, ValueError):
                pass
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(self.process, signal.SIGTERM)
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    _kill_group(self.process, signal.SIGKILL)
                    self.process.wait(5)
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    # ------------------------------------------------------------------ internals
    def _check(self, should_cancel):
        """Between messages: ask the caller whether to stop; a raised stop (server shutdown) counts too."""
        if should_cancel is None:
            return None
        try:
            if should_cancel():
                return ("stop_requested", JobCancelledError("cancelled by the user"))
        except BaseException as exc:  # noqa: BLE001
            return ("stop_requested", exc)
        return None

    def _accept(self, listener):
        accepted: list = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
        thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while thread.is_alive():
            thread.join(POLL_S)
            if self.process.poll() is not None:
                raise ResourceError(f"the GPU group's torchrun gang exited ({_exit_reason(self.process.returncode)}) "
                                    "before rank 0 connected; see the server log")
            if time.monotonic() > deadline:
                raise ResourceError(f"the GPU group's gang did not connect within {self.start_timeout_s:.0f} s")
        return accepted[0]

    def _send(self, message, stage: str) -> None:
        try:
            self.conn.send(message)
        except (OSError, ValueError) as exc:
            raise self._died(stage) from exc

    def _receive(self, timeout_s: Optional[float], stage: str, idle=None):
        """The next message from rank 0; ``idle()`` may return a synthetic message while waiting."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if idle is not None:  # before every message: the caller's cancel check is rate-limited itself
                synthetic = idle()
                if synthetic is not None:
                    return synthetic
            try:
                if self.conn.poll(POLL_S):
                    return self.conn.recv()
            except (EOFError, OSError) as exc:
                raise self._died(stage) from exc
            if self.process.poll() is not None:
                raise self._died(stage)
            if deadline is not None and time.monotonic() > deadline:
                raise ResourceError(f"the GPU group's gang did not finish {stage} within {timeout_s:.0f} s")

    def _died(self, stage: str) -> ResourceError:
        try:
            code = self.process.wait(10)
        except subprocess.TimeoutExpired:
            _kill_group(self.process, signal.SIGKILL)
            code = self.process.wait(5)
        self.close()
        return ResourceError(f"the GPU group's torchrun gang died during {stage} ({_exit_reason(code)}); "
                             "it is started again for the next job (see the server log)")

    def _error_from(self, message, stage: str) -> Ex4dError:
        if message[0] == "error":
            code, text = message[1], message[2]
            return error_from_body({"error": code, "message": text})  # a rank's error, typed by the error table
        return ResourceError(f"the GPU group's gang sent {message[0]!r} during {stage}")


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started the gang dies."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG survives exec
    except (OSError, AttributeError):
        pass


def _kill_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # torchrun's agent and its ranks share the session we started
    except (ProcessLookupError, PermissionError):
        pass


def _exit_reason(code: Optional[int]) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# ---------------------------------------------------------------------- rank side
@dataclass(frozen=True)
class RankInfo:
    """This process's place in the gang (from torchrun's environment)."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, env=None) -> "RankInfo":
        env = os.environ if env is None else env
        try:
            return cls(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))
        except KeyError as exc:
            raise InputError(f"{exc.args[0]} is not set: this module runs under torchrun "
                             "(ex4d_engine.generation.wan.parallel.GangGenerator starts it)") from None

    @property
    def leader(self) -> bool:
        return self.rank == 0


class RankRuntime:
    """One rank's generator and the gang's control channel (a gloo group: requests, cancel flags)."""

    def __init__(self, info: RankInfo, generator, control_group):
        self.info = info
        self.generator = generator
        self.control = control_group
        self.layouts: dict = {}  # step kind -> dit_parallel.Layout (wan only)

    def broadcast(self, message):
        import torch.distributed as dist

        box = [message]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def agree(self, flag: bool) -> bool:
        """Rank 0's flag, on every rank (so all ranks stop at the same step)."""
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.broadcast(tensor, src=0, group=self.control)
        return bool(tensor.item())


def load_rank(args: argparse.Namespace, info: RankInfo) -> RankRuntime:
    """Join the process group and load this rank's generator."""
    import torch.distributed as dist

    from ..registry import load_generator

    if args.generator == "draft":
        dist.init_process_group(backend="gloo")
        return RankRuntime(info, load_generator("draft"), None)

    import torch

    from .adapter import ensure_diffsynth
    from .dit_parallel import ParallelGroups, enable_parallel
    from .model_folder import resolve

    ensure_diffsynth()
    resolve(args.models_dir)  # a missing file is named before NCCL starts
    if torch.cuda.is_available():
        device = f"cuda:{info.local_rank}"
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=torch.device(device))
    else:
        device = "cpu"
        dist.init_process_group(backend="gloo")
    control = dist.new_group(backend="gloo")
    groups = ParallelGroups()  # collective: every rank builds the same groups
    kwargs = {"compile_dit": args.compile_dit}
    if args.tiny:
        from .generator import SamplerSettings
        from .tiny_models import TINY_SAMPLER, register_tiny_models

        register_tiny_models(args.models_dir)
        kwargs["settings"] = SamplerSettings(**TINY_SAMPLER)
    if args.profile:
        kwargs["profile"] = args.profile
    generator = load_generator("wan", args.models_dir, kwargs.pop("profile", None), device=device, **kwargs)
    enable_parallel(generator.pipeline, groups)
    runtime = RankRuntime(info, generator, control)
    runtime.layouts = {"cfg": groups.layout(True), "no_cfg": groups.layout(False)}
    return runtime


def serve_rank(runtime: RankRuntime, conn) -> None:
    """The rank loop: take a request (rank 0 reads it from the caller), run it on every rank."""
    from ..base import GenerationRequest

    info = runtime.info
    while True:
        message = conn.recv() if info.leader else None
        if info.leader and message[0] == "cancel":
            continue  # a cancel that arrived after its request ended
        message = runtime.broadcast(message)
        if message[0] == "stop":
            return
        request: GenerationRequest = message[1]
        cancelled = False

        def should_cancel() -> bool:
            nonlocal cancelled
            if info.leader:
                while conn.poll():  # only cancels arrive while a request runs
                    if conn.recv()[0] == "cancel":
                        cancelled = True
            return runtime.agree(cancelled)

        def progress(fraction: float, detail: str = "") -> None:
            if info.leader:
                conn.send(("progress", float(fraction), detail))

        try:
            video = runtime.generator.generate(request, progress=progress, should_cancel=should_cancel)
        except JobCancelledError:
            if info.leader:
                conn.send(("cancelled",))
            continue
        except Ex4dError as exc:  # raised the same way on every rank (a checked input): the gang lives on
            if info.leader:
                conn.send(("error", exc.code, exc.message))
            continue
        if info.leader:
            conn.send(("result", video))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="One rank of an ex4d GPU-group gang (started by torchrun).")
    parser.add_argument("--address", required=True)
    parser.add_argument("--generator", choices=GANG_GENERATORS, default="wan")
    parser.add_argument("--models-dir")
    parser.add_argument("--profile")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--compile-dit", dest="compile_dit", action="store_const", const=True, default=None)
    parser.add_argument("--no-compile-dit", dest="compile_dit", action="store_const", const=False)
    args = parser.parse_args(argv)
    os.environ.update(MULTICAST_OFF_ENV)  # before NCCL initialises, whatever the caller's environment
    info = RankInfo.from_env()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s gang[{info.rank}] %(levelname)s %(message)s")
    _die_with_parent()  # torchrun's agent gone -> we go too
    conn = None
    try:
        if info.leader:
            address = "\0" + args.address[1:] if args.address.startswith("@") else args.address
            conn = Client(address, family="AF_UNIX", authkey=bytes.fromhex(os.environ.pop(AUTHKEY_ENV)))
        try:
            runtime = load_rank(args, info)
        except Ex4dError as exc:
            if conn is not None:
                conn.send(("error", exc.code, exc.message))
            return 1
        if conn is not None:
            layouts = {kind: f"cfg {lay.cfg} x ulysses {lay.ulysses}" for kind, lay in runtime.layouts.items()}
            conn.send(("ready", {"world_size": info.world_size, "generator": args.generator,
                                 "devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""), "layouts": layouts}))
        serve_rank(runtime, conn)
        return 0
    except BaseException as exc:  # noqa: BLE001 - tell the caller, then let torchrun end the gang
        if conn is not None and not isinstance(exc, (EOFError, KeyboardInterrupt)):
            try:
                conn.send(("error", "internal_error", f"{type(exc).__name__} on rank {info.rank}: {exc}"))
            except OSError:
                pass
        log.error("rank %d failed:\n%s", info.rank, traceback.format_exc())
        return 1
    finally:
        _destroy_process_group()


def _destroy_process_group() -> None:
    try:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - best effort at exit
        pass


if __name__ == "__main__":
    sys.exit(main())
