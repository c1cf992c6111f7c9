"""``ex4d models`` (or ``ex4d models list``): every model ex4d can use, found or missing, with its licence
and the command that gets it, and the Python extras each needs. Nothing is downloaded.

Weights are looked for in ``--models_dir`` (or ``$EX4D_MODELS_DIR``) in the Hugging Face layout, then in
the Hugging Face cache.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Row:
    """One model (backend) and what it needs."""

    name: str
    description: str
    licence: str
    ready: bool
    needs: list  # list[ComponentStatus]-like: .name .found .location .licence .get_command .problem


@dataclass(frozen=True)
class Section:
    title: str
    rows: list[Row]


def depth_section(args: argparse.Namespace) -> Section:
    from ..depth import DepthSettings, registered_backends

    settings = DepthSettings(models_dir=args.models_dir, depthcrafter_repo=args.depthcrafter_repo)
    rows = [Row("file", "depth from your own file (.npz/.npy, EXR or 16-bit PNG sequence)", "yours", True, [])]
    for backend in registered_backends():
        needs = backend.components(settings)
        use = "commercial use OK" if backend.commercial_use else "NON-COMMERCIAL"
        rows.append(Row(backend.name, backend.description, f"{backend.licence} [{use}]",
                        all(c.found for c in needs), needs))
    return Section("Depth backends (--backend / --depth_backend)", rows)


def generation_section(args: argparse.Namespace) -> Section:
    from ..generation.wan.model_folder import LICENCE, list_needs

    folder, needs = list_needs(args.models_dir)
    rows = [Row("draft", "a preview in seconds, no weights (not the 14B model)", "yours", True, []),
            Row("wan", f"Wan2.1-I2V-14B-480P + EX-4D in {folder} (`ex4d models check DIR` verifies the files)",
                LICENCE, all(n.found for n in needs), needs)]
    return Section("Generators (ex4d generate --generator)", rows)


#: Python extras: (extra, the module that proves it is installed, what needs it).
EXTRAS = (("server", "fastapi", "ex4d serve"), ("depth", "transformers", "depth-anything and depth-pro"),
          ("generate", "diffsynth", "the wan generator"), ("cluster", "ray", "ex4d serve --ray"))


def extras_section(args: argparse.Namespace) -> Section:
    import importlib.util

    rows = []
    for extra, module, what in EXTRAS:
        found = importlib.util.find_spec(module) is not None
        need = _Need(module, found, "this Python" if found else "not installed", "see PyPI",
                     f"pip install -e '.[{extra}]'", "")
        rows.append(Row(f"[{extra}]", f"Python packages for {what}", "see each package", found, [need]))
    return Section("Python extras (pip install -e '.[EXTRA]')", rows)


@dataclass(frozen=True)
class _Need:
    name: str
    found: bool
    location: str
    licence: str
    get_command: str
    problem: str


#: Sections in the order they are printed: ``fn(args) -> Section``.
SECTIONS: list[Callable[[argparse.Namespace], Section]] = [depth_section, generation_section, extras_section]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list models: found/missing, licence, download command",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(p)
    p.set_defaults(func=run_list)
    sub = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    lst = sub.add_parser("list", help="list models (the default)")
    _add_common(lst)
    lst.set_defaults(func=run_list)
    from .models_check import add_check_parser

    add_check_parser(sub)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models_dir", "--models-dir", default=argparse.SUPPRESS,
                   help="folder of model folders (default $EX4D_MODELS_DIR, then the Hugging Face cache)")
    p.add_argument("--depthcrafter_repo", "--depthcrafter-repo", default=argparse.SUPPRESS,
                   help="DepthCrafter git checkout (default $EX4D_DEPTHCRAFTER_REPO)")


def run_list(args: argparse.Namespace) -> int:
    for attr in ("models_dir", "depthcrafter_repo"):
        if not hasattr(args, attr):
            setattr(args, attr, None)
    from ..depth.weights import models_dir_note

    print(render([section(args) for section in SECTIONS]))
    note = models_dir_note(args.models_dir)
    if note:
        print(note)
    return 0


def render(sections: list[Section]) -> str:
    lines = []
    for section in sections:
        lines.append(f"== {section.title} ==")
        for row in section.rows:
            lines.append(f"{row.name:<16} {'READY' if row.ready else 'MISSING':<8} {row.description}")
            lines.append(f"{'':<16} licence: {row.licence}")
            for need in row.needs:
                state = "found" if need.found else "missing"
                lines.append(f"{'':<18}- {need.name}: {state} ({need.location})")
                if not need.found:
                    if need.problem:
                        lines.append(f"{'':<20}problem: {need.problem}")
                    lines.append(f"{'':<20}get it:  {need.get_command}")
                lines.append(f"{'':<20}licence: {need.licence}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
