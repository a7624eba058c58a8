"""Atomic writes (modes, no leftovers) and the image manifest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gzmorph.manifest import refresh_manifest, write_manifest


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_mode_the_umask_says(tmp_path, umask, mode):
    code = ("from gzmorph.io import write_json; import sys; write_json(sys.argv[1], {'a': 1})")
    out = tmp_path / "out.json"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, preexec_fn=lambda: os.umask(umask))
    assert out.stat().st_mode & 0o777 == mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def images(tmp_path, n=3):
    paths = []
    for i in range(n):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(bytes([i]) * (10 + i))
        paths.append(str(p))
    return paths


def test_manifest_is_rewritten_only_when_an_image_changes(tmp_path):
    paths = images(tmp_path)
    manifest = tmp_path / "m.tsv"
    write_manifest(manifest, paths)
    before = manifest.read_text()
    assert refresh_manifest(manifest) is False and manifest.read_text() == before

    st = os.stat(paths[1])
    Path(paths[1]).write_bytes(b"another image")  # replaced
    assert refresh_manifest(manifest) is True and manifest.read_text() != before
    Path(paths[1]).write_bytes(bytes([1]) * 11)  # restored, with its old time stamp
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert refresh_manifest(manifest) is True and manifest.read_text() == before

    os.unlink(paths[2])  # removed
    assert refresh_manifest(manifest) is True and f"-1\t-1\t{paths[2]}" in manifest.read_text()


def test_a_path_with_a_line_break_is_refused_and_a_tab_survives(tmp_path):
    """A path with a newline broke every later DAG build (IndexError in refresh_manifest): it is
    refused, as are the other characters str.splitlines splits on (\\u2028, \\x1c...); a tab is fine."""
    import pytest

    from gzmorph.io import InputError

    with pytest.raises(InputError, match="holds a line break or NUL; rename the file"):
        write_manifest(tmp_path / "m.tsv", [str(tmp_path / "a\nb.jpg")])
    assert not (tmp_path / "m.tsv").exists()
    odd = tmp_path / "a\u2028b\x1c.jpg"
    odd.write_bytes(b"x")
    with pytest.raises(InputError):
        write_manifest(tmp_path / "m.tsv", [str(odd)])
    tabbed = tmp_path / "a\tb.jpg"
    tabbed.write_bytes(b"x")
    write_manifest(tmp_path / "m.tsv", [str(tabbed)])
    assert refresh_manifest(tmp_path / "m.tsv") is False
    tabbed.write_bytes(b"yy")
    assert refresh_manifest(tmp_path / "m.tsv") is True


def test_a_manifest_an_older_version_broke_is_removed_for_the_source_rule_to_write_again(tmp_path):
    from gzmorph.manifest import HEADER

    broken = tmp_path / "m.tsv"
    broken.write_text(f"{HEADER}\n10\t123\t/data/a\nb.jpg\n")  # a path with a line break, split in two
    assert refresh_manifest(broken) is True and not broken.exists()


def test_refresh_leaves_missing_or_foreign_files_alone(tmp_path):
    assert refresh_manifest(tmp_path / "none.tsv") is False
    (tmp_path / "x.tsv").write_text("something else\n")
    assert refresh_manifest(tmp_path / "x.tsv") is False and (tmp_path / "x.tsv").read_text() == "something else\n"


def test_no_rule_script_writes_an_output_in_place():
    """Every output a script writes itself goes through gzmorph.io.atomic_path (or write_json, which
    does): a write straight to the final path, cut short, would leave a file that looks complete."""
    import re

    scripts = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
    direct = re.compile(r"\.(to_csv|to_parquet|to_json|savefig|write_text|write_bytes)\(\s*snakemake\.output"
                        r"|(torch|np)\.save\w*\([^)]*snakemake\.output")
    found = [f"{p.name}:{i}" for p in sorted(scripts.glob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if direct.search(line)]
    assert found == []


def test_set_threads_also_limits_a_blas_library_loaded_before_it():
    """Scripts import pandas (numpy's OpenBLAS, which reads OPENBLAS_NUM_THREADS when it loads) before
    rule_context: the env vars alone left BLAS on every core, and similarity's PCA, for one, differed
    in its last bits between machines of different core counts."""
    code = ("import numpy, threadpoolctl; from gzmorph.smk import set_threads; set_threads(1); "
            "print(sorted({p['num_threads'] for p in threadpoolctl.threadpool_info()}))")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[1]", out.stdout + out.stderr


def test_content_digest_follows_content_and_reads_a_file_only_when_its_stat_changed(tmp_path, monkeypatch):
    import hashlib
    import json
    import os

    from gzmorph.manifest import content_digest

    a, b, cache = tmp_path / "a.bin", tmp_path / "b.bin", tmp_path / "cache" / "digests.json"
    a.write_bytes(b"weights")
    b.write_bytes(b"config")
    first = content_digest([a, b], cache)
    assert first and content_digest([], cache) == "" and content_digest([b, a], cache) != first
    st = a.stat()
    a.write_bytes(b"WEIGHTS")  # another content, put back at the old time (cp -p of an older file)
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))
    second = content_digest([a, b], cache)
    assert second != first
    reads = []
    real = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda fh, d: reads.append(fh.name) or real(fh, d))
    assert content_digest([a, b], cache) == second and reads == []  # unchanged stat: nothing read
    a.touch()  # same content, new time: read again, same digest
    assert content_digest([a, b], cache) == second and reads == [str(a)]
    for damaged in ([st.st_size, st.st_mtime_ns], [1, 2, None], "x", None):  # a cache edited by hand: read again
        cache.write_text(json.dumps({os.path.abspath(a): damaged}))
        assert content_digest([a, b], cache) == second
