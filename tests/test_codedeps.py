"""Code dependencies: the static import closure of each workflow script (gzmorph.codedeps)."""

from __future__ import annotations

import modulefinder
import re
from pathlib import Path

import pytest

from gzmorph.codedeps import import_closure, library_modules, package_hash

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))
# rules that train, distil, embed, predict or evaluate: never report or download code
COMPUTE = ("train_classifier", "evaluate_classifier", "classify_catalogue", "train_expert", "distill",
           "evaluate_distilled", "train_representation", "embed", "similarity", "anomalies", "finetune",
           "preprocess_images", "select", "split")
NOT_COMPUTE = re.compile(r"gzmorph/(report/|download\.py|sources/gz2_download\.py)")


def rel(paths):
    return sorted(str(Path(p).relative_to(SRC)) for p in paths)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_closure_follows_absolute_relative_lazy_and_package_imports(tmp_path):
    src = write(tmp_path / "src", {
        "gzmorph/__init__.py": "",
        "gzmorph/a.py": "from .b import f\nimport numpy\n",
        "gzmorph/b.py": "def f():\n    from . import c\n    from .sub.d import g\n",
        "gzmorph/c.py": "",
        "gzmorph/sub/__init__.py": "from ..e import x\n",
        "gzmorph/sub/d.py": "from ..io import y\n",
        "gzmorph/e.py": "",
        "gzmorph/io.py": "",
        "gzmorph/unused.py": "",
    })
    script = write(tmp_path, {"script.py": "from gzmorph.a import thing\n"}) / "script.py"
    got = [str(Path(p).relative_to(src)) for p in import_closure(script, src)]
    assert got == sorted(["gzmorph/__init__.py", "gzmorph/a.py", "gzmorph/b.py", "gzmorph/c.py",
                          "gzmorph/sub/__init__.py", "gzmorph/sub/d.py", "gzmorph/e.py", "gzmorph/io.py"])


def finder_closure(script: Path) -> list[str]:
    """An independent oracle: the standard library's modulefinder, limited to the package.

    It misses some relative imports (``from .io import`` beside the standard ``io``), so it bounds
    the closure from below."""
    finder = modulefinder.ModuleFinder(path=[str(SRC)])
    finder.run_script(str(script))
    return rel(m.__file__ for name, m in finder.modules.items()
               if m.__file__ and name.split(".")[0] == "gzmorph")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_closure_of_each_script_holds_all_modulefinder_sees(script):
    assert set(finder_closure(script)) <= set(rel(import_closure(script, SRC)))


@pytest.mark.parametrize("script", COMPUTE)
def test_compute_rules_never_depend_on_report_or_download_code(script):
    closure = import_closure(REPO / "workflow" / "scripts" / f"{script}.py", SRC)
    assert not [p for p in closure if NOT_COMPUTE.search(p)]


def test_package_hash_is_stable_and_covers_the_package():
    assert package_hash() == package_hash() and len(package_hash()) == 16
    assert {p.name for p in library_modules(SRC)} >= {"train.py", "codedeps.py", "__init__.py"}


def test_library_logs_through_logging_not_print():
    """Only the command-line entry points (gzmorph.cli, ``python -m gzmorph.gpu``) write to the console."""
    import ast

    offenders = []
    for path in (SRC / "gzmorph").rglob("*.py"):
        if path.name == "cli.py":
            continue
        tree = ast.parse(path.read_text())
        mains = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in ("main", "_main")
                 for n in ast.walk(f)}
        offenders += [f"{path.relative_to(SRC)}:{n.lineno}" for n in ast.walk(tree)
                      if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print" and id(n) not in mains]
    assert offenders == []


def test_a_foreign_gzmorph_is_named_unless_it_is_a_byte_identical_copy(tmp_path):
    """The rules track src/'s modules; the package Python imports must be those files. A second
    checkout run with the first one's environment tracked its own edits and ran the other code."""
    import shutil

    from gzmorph.codedeps import foreign_modules

    assert foreign_modules(SRC) == []  # the checkout's own
    copy = tmp_path / "src"
    shutil.copytree(SRC / "gzmorph", copy / "gzmorph", ignore=shutil.ignore_patterns("__pycache__"))
    assert foreign_modules(copy) == []  # a copy of the same code (the tests' workflow copies)
    with (copy / "gzmorph" / "similarity.py").open("a") as f:
        f.write("# edited in the other checkout\n")
    (copy / "gzmorph" / "added.py").write_text("")
    (copy / "gzmorph" / "cuts.py").unlink()
    assert foreign_modules(copy) == ["added.py", "cuts.py", "similarity.py"]
