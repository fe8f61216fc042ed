"""The headless CLI, ``python -m engine``: a thin shell over the engine's functions.

Each module in this package that defines ``register(subparsers)`` adds one command group
(``law``, ``policy``, ``study``, ``encoders``, ``correspondence``, ``alignment``, ``jobs`` ...).
Leaf commands are declared with :func:`engine.cli.common.leaf` and return a
:class:`engine.cli.common.Output`; this module prints it as JSON or as a readable table.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
from pathlib import Path

from engine.errors import LawExplorerError

CONSOLE_SCRIPT = "law-explorer"  # pyproject.toml [project.scripts]: the same CLI as `python -m engine`


def build_parser() -> argparse.ArgumentParser:
    prog = CONSOLE_SCRIPT if Path(sys.argv[0]).name == CONSOLE_SCRIPT else "python -m engine"
    parser = argparse.ArgumentParser(prog=prog, description="Law Explorer: the law of vision representation in MLLMs.")
    sub = parser.add_subparsers(dest="group", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser



def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors print one line on stderr and exit 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        output = args.func(args)
        output.print(getattr(args, "format", "text"))
        return 0
    except LawExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, the traceback only on request
        if os.environ.get("LAW_EXPLORER_DEBUG"):
            traceback.print_exc()
        print(f"error: internal error ({type(exc).__name__}: {exc}); set LAW_EXPLORER_DEBUG=1 for details", file=sys.stderr)
        return 1
