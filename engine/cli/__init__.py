"""The headless CLI, ``python -m engine``: a thin shell over the engine's functions.

Each module in this package that defines ``register(subparsers)`` adds one command group
(``law``, ``policy``, ``study``, ``encoders``, ``correspondence``, ``alignment``, ``jobs`` ...).
Leaf commands are declared with :func:`engine.cli.common.leaf` and return a
:class:`engine.cli.common.Output`; this module prints it as JSON or as a readable table.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import traceback
import warnings
from pathlib import Path
from typing import NoReturn

from engine.errors import LawExplorerError

CONSOLE_SCRIPT = "law-explorer"  # pyproject.toml [project.scripts]: the same CLI as `python -m engine`


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one ``error:`` line naming the command (``--help`` still prints the full usage)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("python -m engine ").removeprefix(f"{CONSOLE_SCRIPT} ")
        self.exit(2, f"error: {command}: {' '.join(message.split())} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    prog = CONSOLE_SCRIPT if Path(sys.argv[0]).name == CONSOLE_SCRIPT else "python -m engine"
    parser = OneLineParser(prog=prog, description="Law Explorer: the law of vision representation in MLLMs.")
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
    if not os.environ.get("LAW_EXPLORER_DEBUG"):
        # stderr carries one error line; library chatter (logging, FutureWarnings) only when debugging
        logging.getLogger().setLevel(logging.ERROR)
        warnings.simplefilter("ignore")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        output = args.func(args)
        output.print(getattr(args, "format", "text"))
        return 0
    except LawExplorerError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)  # one line, whatever the message holds
        return 2
    except BrokenPipeError:  # e.g. `law fit ... | head`: the reader left; no flush error at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print("error: the output pipe closed before everything was written", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, the traceback only on request
        if os.environ.get("LAW_EXPLORER_DEBUG"):
            traceback.print_exc()
        detail = " ".join(str(exc).split())[:300]
        print(f"error: internal error ({type(exc).__name__}: {detail}); set LAW_EXPLORER_DEBUG=1 for details", file=sys.stderr)
        return 1
