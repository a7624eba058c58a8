"""The library files a workflow script runs: the static import closure of the script.

The workflow declares these files as inputs of the script's rule, so that a content change
of any module reruns exactly the rules whose scripts import it, directly or transitively.
The closure is read from the source (``ast``), never by importing anything, so that building
the DAG stays fast and a broken module cannot break the dry run.  It counts every import
statement, including those inside functions (lazy imports still run when the rule does), and
for ``gzmorph.a.b`` also the package ``__init__`` files that Python executes on the way.

Standard library only: this module is read when the DAG is built.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = "gzmorph"


def module_file(root: Path, name: str) -> Path | None:
    """The file of module ``name`` (``gzmorph.a.b``) under ``root`` (the folder holding ``gzmorph/``)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _executed_modules(name: str) -> list[str]:
    """``gzmorph.a.b`` -> ``[gzmorph, gzmorph.a, gzmorph.a.b]``: importing a module runs its parents."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=None)
def imported_names(path: Path, module: str | None = None, is_package: bool = False) -> frozenset[str]:
    """Every module name ``path`` may import (absolute, relative resolved), including ``from x import sub``.

    Each file is parsed once per process: the closures of all scripts share its modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (module if is_package else module.rpartition(".")[0]) if module else ""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                names.add(base)
            # `from pkg import sub` imports the submodule when there is one
            names.update(f"{base}.{alias.name}" if base else alias.name for alias in node.names)
    return frozenset(names)


@lru_cache(maxsize=None)
def import_closure(script: str | Path, root: str | Path) -> tuple[str, ...]:
    """Sorted paths of the ``gzmorph`` files that running ``script`` may execute."""
    root = Path(root)
    seen: set[Path] = set()
    todo = [(Path(script), None, False)]
    while todo:
        path, module, is_package = todo.pop()
        for name in imported_names(path, module, is_package):
            if name.split(".")[0] != PACKAGE:
                continue
            for executed in _executed_modules(name):
                f = module_file(root, executed)
                if f is not None and f not in seen:
                    seen.add(f)
                    todo.append((f, _module_name(root, f), f.name == "__init__.py"))
    return tuple(sorted(str(p) for p in seen))


@lru_cache(maxsize=None)
def package_hash() -> str:
    """A hash of every module of the installed package: the code version a checkpoint records."""
    import hashlib

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(here.rglob("*.py")):
        digest.update(str(path.relative_to(here)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def foreign_modules(root: str | Path, imported: str | Path | None = None) -> list[str]:
    """The modules (relative paths) in which the package Python imports (``imported``: this one's
    folder) differs from the one under ``root``, whose files the rules declare as their code: empty
    when it is that one, or a byte-identical copy (a test's copy of the workflow, a non-editable
    install of the same code).  A second checkout run with the first one's environment would
    otherwise track its own edits while running the other code."""
    here = Path(imported or Path(__file__).parent).resolve()
    there = (Path(root) / PACKAGE).resolve()
    if here == there:
        return []

    def files(base: Path) -> dict[str, Path]:
        return {str(p.relative_to(base)): p for p in base.rglob("*.py")}

    mine, theirs = files(here), files(there)
    return sorted(k for k in set(mine) | set(theirs)
                  if k not in mine or k not in theirs or mine[k].read_bytes() != theirs[k].read_bytes())


def library_modules(root: str | Path) -> list[Path]:
    """Every module file of the package (what a code change can touch)."""
    return sorted((Path(root) / PACKAGE).rglob("*.py"))
