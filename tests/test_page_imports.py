"""Pages use the engine only through package faces: ``from engine.<pkg> import <name>`` with the name in the
package's ``__all__`` (or a top-level engine module); never a submodule, never the CLI."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELLS = [*sorted((ROOT / "pages").glob("*.py")), ROOT / "app.py"]


def _violations(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in names:
            parts = module.split(".")
            if parts[0] != "engine":
                continue
            where = f"{path.name}:{node.lineno}: {module}" + (f" import {name}" if name else "")
            if "cli" in parts or (name == "cli" and module == "engine"):
                found.append(f"{where} (the CLI is a shell, not a face)")
            elif len(parts) > 2:
                found.append(f"{where} (a submodule)")
            elif len(parts) == 2 and name is not None:
                face = importlib.import_module(module)
                if (ROOT / "engine" / parts[1] / "__init__.py").is_file() and name not in getattr(face, "__all__", ()):
                    found.append(f"{where} (not exported by {module}.__all__)")
    return found


def test_pages_import_only_package_faces():
    assert [v for path in SHELLS for v in _violations(path)] == []
