"""``ex4d`` command line: argparse -> engine -> exit code.

Each sub-command lives in its own module here exposing ``add_parser(subparsers)``; the parser it
adds sets ``func(args) -> int``. Errors are translated once, in :func:`main`: an
:class:`~ex4d_engine.errors.Ex4dError` prints its message and exits with its ``exit_code``;
anything else prints a traceback and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from .. import __version__
from ..errors import Ex4dError

#: Sub-command modules, in the order ``ex4d --help`` lists them.
COMMAND_MODULES = ["recon", "demo", "trajectory", "depth", "models", "serve", "generate", "run"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ex4d", description="EX-4D camera re-shooting engine")
    parser.add_argument("--version", action="version", version=f"ex4d {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Ex4dError as exc:
        print(f"ex4d: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ex4d: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug, not a user error: keep the traceback
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
