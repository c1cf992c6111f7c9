"""``ex4d`` command line: argparse -> engine -> exit code.

Each sub-command lives in its own module here exposing ``add_parser(subparsers)``; the parser it
adds sets ``func(args) -> int``. Packages above the engine add theirs through the ``ex4d.commands``
entry point group (the server's ``ex4d serve``), so the engine never imports them.
Errors are translated once, in :func:`main`, through the error table (``ex4d_engine/errors.py``):
an :class:`~ex4d_engine.errors.Ex4dError` prints its message and exits with its exit code;
anything else is a bug: traceback, exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from importlib.metadata import entry_points

from .. import __version__
from ..errors import InternalError, as_ex4d_error, traceback_text

#: Sub-command modules, in the order ``ex4d --help`` lists them.
COMMAND_MODULES = ["recon", "demo", "trajectory", "depth", "models", "generate", "run"]
#: Entry point group through which other packages add sub-commands (``add_parser(subparsers)``).
PLUGIN_GROUP = "ex4d.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ex4d", description="EX-4D camera re-shooting engine. Every --flag may be "
                                     "written with hyphens or underscores (--models-dir = --models_dir).")
    parser.add_argument("--version", action="version", version=f"ex4d {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    for plugin in sorted(entry_points(group=PLUGIN_GROUP), key=lambda ep: ep.name):
        plugin.load()(subparsers)
    _plain_help(parser)
    return parser


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Help is read in a terminal: the commands' docstrings lose their reST markup (``x``, :func:`x`)."""
    if parser.description:
        text = re.sub(r":[a-z]+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", parser.description)
        parser.description = text.replace("``", "`")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _plain_help(sub)


def normalise_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Accept ``--models-dir`` and ``--models_dir`` alike: each flag becomes the spelling its command declares.

    The seed's underscore flags stay the declared ones; a flag declared in neither spelling is left for
    argparse to refuse (with its own message). Sub-commands are followed, each with its own flags.
    """
    known = {o for action in parser._actions for o in action.option_strings if o.startswith("--")}
    subcommands = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
    out = []
    for index, token in enumerate(argv):
        if token in subcommands:
            return out + [token] + normalise_flags(subcommands[token], argv[index + 1:])
        name, eq, value = token.partition("=")
        if token.startswith("--") and name not in known:
            for other in ("--" + name[2:].replace("-", "_"), "--" + name[2:].replace("_", "-")):
                if other in known:
                    token = other + eq + value
                    break
        out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(normalise_flags(parser, argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("ex4d: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure leaves through the error table
        error = as_ex4d_error(exc)
        if error.is_bug:  # not the user's mistake: keep the traceback for the report
            print(traceback_text(exc), file=sys.stderr, end="")
        print(f"ex4d: error: {error.message}", file=sys.stderr)
        return error.exit_code if error.exit_code is not None else InternalError.exit_code


if __name__ == "__main__":
    sys.exit(main())
