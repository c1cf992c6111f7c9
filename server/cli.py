"""``ex4d serve``: run the local engine process (HTTP API v1, docs/api.md).

The server owns this sub-command; the engine's CLI finds it through the ``ex4d.commands``
entry point (pyproject.toml), so the engine never imports the server.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ex4d_engine.protocol import DEFAULT_PORT


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the local engine server (HTTP API for Blender and scripts)",
        description="Run the ex4d engine server: FastAPI over the engine, one GPU worker process per GPU, "
                    "jobs and scenes persisted in the data dir. API: docs/api.md, /docs, /openapi.json.")
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; a non-loopback "
                        "address needs an explicit token: EX4D_TOKEN or --token-file)")
    parser.add_argument("--port", type=int, default=None, help=f"port (default {DEFAULT_PORT}; 0 = any free port, "
                        "written to <data-dir>/server.json)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="jobs, scenes, token (default $EX4D_DATA_DIR or ~/.local/share/ex4d)")
    parser.add_argument("--gpus", default=None, help="'auto' (default), 'cpu', or GPU indices '0,1' "
                        "(one worker process per GPU group)")
    parser.add_argument("--group-size", type=int, default=None, help="GPUs per worker (default 1); a group "
                        "runs the Wan generator as one CFG-parallel x sequence-parallel torchrun gang; must divide "
                        "the number of --gpus and be 1 or an even divisor of Wan's 40 attention heads (1, 2, 4, 8)")
    parser.add_argument("--preload", action="store_true", default=None,
                        help="load the available generators at start-up instead of at the first job")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="run the jobs on a Ray cluster: 'auto' (the cluster this machine belongs to) or the "
                        "head's HOST:PORT; one actor per --group-size GPUs anywhere in the cluster (docs/cluster.md)")
    parser.add_argument("--ray-shared-dir", type=Path, default=None,
                        help="with --ray: a folder mounted at the same path on every node; job files travel "
                        "through it instead of Ray's object store")
    parser.add_argument("--ray-actors", type=int, default=None,
                        help="with --ray: keep this many actors; those beyond the free GPUs wait for a node to join "
                        "(default: one per --group-size GPUs of the nodes there are)")
    parser.add_argument("--import-root", type=Path, action="append", default=None, dest="import_roots",
                        help="directory clients may import videos/depth from by path (repeatable)")
    parser.add_argument("--models-dir", type=Path, default=None, help="where model weights live")
    parser.add_argument("--token-file", type=Path, default=None, help="read the bearer token from this file")
    parser.add_argument("--cors-origin", action="append", default=None, dest="cors_origins",
                        help="allow this browser origin (repeatable; default: no CORS)")
    parser.add_argument("--allowed-host", action="append", default=None, dest="allowed_hosts",
                        help="a host name clients use to reach a non-loopback bind (repeatable); IP "
                             "addresses and localhost always work; other names are refused (DNS rebinding)")
    parser.add_argument("--max-upload-mb", type=int, default=None, help="upload size limit (default 2048)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ex4d_engine.errors import InputError, ResourceError

    try:
        from pydantic import ValidationError

        from .app import serve
        from .settings import Settings
    except ImportError as exc:
        raise ResourceError(f"`ex4d serve` needs the server extra ({exc.name} is missing): "
                            "pip install -e '.[server]'  (or: bash .ci/setup.sh test)") from None

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    overrides = {key: value for key, value in vars(args).items()
                 if key in Settings.model_fields and value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    settings = settings.model_copy(update={"data_dir": Path(os.path.abspath(settings.data_dir))})
    return serve(settings)
