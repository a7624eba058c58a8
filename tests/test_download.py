"""Tests of gzmorph.download against a real HTTP server on 127.0.0.1 (ephemeral port)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import threading
import warnings
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gzmorph.download import (
    GZ2_FILES,
    ArchiveError,
    ChecksumError,
    DownloadError,
    RemoteFile,
    UnverifiedDownloadWarning,
    extract,
    fetch,
    fetch_remote,
)
from gzmorph.io import InputError

SIZE = 3 * 1024 * 1024 + 12345  # a few MB, not a multiple of the chunk size
PAYLOAD = os.urandom(SIZE)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
FAST = dict(retries=3, timeout=2, backoff=0.01, progress=False, chunk_size=64 * 1024)


# ------------------------------------------------------------------ the server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server API
        cfg = self.server.cfg
        path = self.path.split("?")[0]
        rng = self.headers.get("Range")
        entry = {"path": path, "range": rng, "sent": 0, "status": None}
        with cfg["lock"]:
            cfg["log"].append(entry)
            fail = cfg["fail"].get(path, [])
            status_override = fail.pop(0) if fail else None
            cuts = cfg["cut"].get(path, [])
            cut = cuts.pop(0) if cuts else None
        if path not in cfg["files"]:
            status_override = status_override or 404
        if status_override is not None:
            entry["status"] = status_override
            body = b"nope"
            self.send_response(status_override)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        data = cfg["files"][path]
        if cfg["wrong"].get(path):
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        start = 0
        if rng and not cfg["ignore_range"]:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            entry["status"] = 206
        else:
            self.send_response(200)
            entry["status"] = 200
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if cut is not None:
            self.wfile.write(body[:cut])
            entry["sent"] = min(cut, len(body))
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        stall = cfg["stall"].get(path, 0)
        if stall:
            cfg["stall"][path] = stall - 1
            cfg["release"].wait(30)  # until the test ends; the client times out first
            return
        try:
            self.wfile.write(body)
            entry["sent"] = len(body)
        except OSError:
            pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.cfg = {"files": {}, "cut": {}, "fail": {}, "wrong": {}, "stall": {}, "ignore_range": False,
                 "log": [], "lock": threading.Lock(), "release": threading.Event()}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    httpd.url = lambda p: f"http://{host}:{port}{p}"
    try:
        yield httpd
    finally:
        httpd.cfg["release"].set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def _closed_port_url(path="/x") -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}{path}"


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------------- fetching
def test_plain_download_verifies_and_renames(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert out == tmp_path / "f.bin"
    assert out.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["f.bin"]
    assert server.cfg["log"][0]["range"] is None


def test_cut_connection_resumes_with_range(server, tmp_path):
    k = 1_000_003
    server.cfg["files"]["/f.bin"] = PAYLOAD
    server.cfg["cut"]["/f.bin"] = [k]
    out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    log = server.cfg["log"]
    assert len(log) == 2
    assert log[0]["range"] is None and log[0]["sent"] == k
    assert log[1]["range"] == f"bytes={k}-" and log[1]["status"] == 206
    assert hashlib.md5(out.read_bytes()).hexdigest() == PAYLOAD_MD5
    assert sum(e["sent"] for e in log) == SIZE  # resumed, not downloaded twice
    assert _leftovers(tmp_path) == ["f.bin"]


def test_several_cuts_then_success(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    server.cfg["cut"]["/f.bin"] = [500_000, 700_000, 100]
    out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert out.read_bytes() == PAYLOAD
    ranges = [e["range"] for e in server.cfg["log"]]
    assert ranges == [None, "bytes=500000-", "bytes=1200000-", "bytes=1200100-"]
    assert sum(e["sent"] for e in server.cfg["log"]) == SIZE


def test_interrupted_run_leaves_part_that_next_run_resumes(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    server.cfg["cut"]["/f.bin"] = [400_000, 0]  # cut, then a retry that delivers nothing
    with pytest.raises(DownloadError) as info:
        fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **{**FAST, "retries": 1})
    assert "will be resumed" in str(info.value)
    assert not (tmp_path / "f.bin").exists()
    assert (tmp_path / "f.bin.part").stat().st_size == 400_000
    server.cfg["log"].clear()
    fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert server.cfg["log"][0]["range"] == "bytes=400000-"
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    k = 777_777
    server.cfg["files"]["/f.bin"] = PAYLOAD
    server.cfg["cut"]["/f.bin"] = [k]
    server.cfg["ignore_range"] = True
    out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    log = server.cfg["log"]
    assert log[1]["range"] == f"bytes={k}-" and log[1]["status"] == 200
    assert out.read_bytes() == PAYLOAD  # not prefix + full body


def test_416_on_complete_part_finishes_without_body(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert [e["status"] for e in server.cfg["log"]] == [416]
    assert out.read_bytes() == PAYLOAD


def test_416_on_oversized_part_restarts(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD + b"garbage")
    out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert [e["status"] for e in server.cfg["log"]] == [416, 200]
    assert out.read_bytes() == PAYLOAD


def test_stale_part_with_bad_prefix_is_redownloaded_once(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(b"\0" * 1000)  # wrong bytes from some earlier run
    out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert [e["range"] for e in server.cfg["log"]] == ["bytes=1000-", None]
    assert out.read_bytes() == PAYLOAD


def test_mirror_fallback(server, tmp_path):
    server.cfg["files"]["/good.bin"] = PAYLOAD
    urls = ["nosuchscheme://x/f.bin", _closed_port_url("/refused.bin"), server.url("/missing.bin"),
            server.url("/good.bin")]
    out = fetch(urls, tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert out.read_bytes() == PAYLOAD
    # a 404 is permanent: one request, no retries
    assert [e["path"] for e in server.cfg["log"]] == ["/missing.bin", "/good.bin"]


def test_retries_on_500_then_success(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    server.cfg["fail"]["/f.bin"] = [500, 503]
    out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert [e["status"] for e in server.cfg["log"]] == [500, 503, 200]
    assert out.read_bytes() == PAYLOAD


def test_persistent_500_gives_up_after_retries(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    server.cfg["fail"]["/f.bin"] = [500] * 10
    with pytest.raises(DownloadError) as info:
        fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **{**FAST, "retries": 2})
    assert len(server.cfg["log"]) == 3
    assert "HTTP 500" in str(info.value) and "gave up after 3 attempts" in str(info.value)


def test_timeout_is_retried(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    server.cfg["stall"]["/f.bin"] = 1
    out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)  # a 0.5 s timeout met pauses too
    assert out.read_bytes() == PAYLOAD
    assert len(server.cfg["log"]) == 2


def test_wrong_checksum_clear_error_and_nothing_left(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    server.cfg["wrong"]["/f.bin"] = True
    url = server.url("/f.bin")
    with pytest.raises(ChecksumError) as info:
        fetch(url, tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    msg = str(info.value)
    assert url in msg and PAYLOAD_MD5 in msg
    bad = hashlib.md5(bytes(b ^ 0xFF for b in PAYLOAD[:16]) + PAYLOAD[16:]).hexdigest()
    assert bad in msg
    assert isinstance(info.value, DownloadError) and isinstance(info.value, InputError)
    assert _leftovers(tmp_path) == []  # no dest, no .part, nothing that looks complete


def test_wrong_checksum_on_first_mirror_falls_through(server, tmp_path):
    server.cfg["files"]["/bad.bin"] = PAYLOAD
    server.cfg["wrong"]["/bad.bin"] = True
    server.cfg["files"]["/good.bin"] = PAYLOAD
    out = fetch([server.url("/bad.bin"), server.url("/good.bin")], tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert out.read_bytes() == PAYLOAD


def test_all_offline_one_clear_error(tmp_path):
    urls = [_closed_port_url("/a.bin"), _closed_port_url("/b.bin")]
    with pytest.raises(DownloadError) as info:
        fetch(urls, tmp_path / "f.bin", PAYLOAD_MD5, **{**FAST, "retries": 1})
    msg = str(info.value)
    assert not isinstance(info.value, ChecksumError)
    for u in urls:
        assert u in msg
    assert "data_dir" in msg and "f.bin" in msg and "\n" not in msg  # one line, every URL on it
    assert _leftovers(tmp_path) == []


def test_present_file_with_good_md5_makes_no_request(server, tmp_path):
    (tmp_path / "f.bin").write_bytes(PAYLOAD)
    out = fetch([server.url("/f.bin"), _closed_port_url()], tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert out.read_bytes() == PAYLOAD
    assert server.cfg["log"] == []


def test_present_file_with_bad_md5_is_set_aside_and_refetched(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin").write_bytes(b"old version")
    with pytest.warns(RuntimeWarning, match="expected"):
        out = fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **FAST)
    assert out.read_bytes() == PAYLOAD
    assert (tmp_path / "f.bin.corrupt").read_bytes() == b"old version"


def test_unknown_md5_warns_and_records_sidecar(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    with pytest.warns(UnverifiedDownloadWarning, match="cannot be verified"):
        out = fetch(server.url("/f.bin"), tmp_path / "f.bin", None, **FAST)
    assert (tmp_path / "f.bin.md5").read_text() == f"{PAYLOAD_MD5}  f.bin\n"
    # second call: present, trusted, no network
    server.cfg["log"].clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fetch(server.url("/f.bin"), out, None, **FAST) == out
    assert server.cfg["log"] == []


def test_progress_bar_without_tty(server, tmp_path, capsys):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    server.cfg["cut"]["/f.bin"] = [300_000]
    fetch(server.url("/f.bin"), tmp_path / "f.bin", PAYLOAD_MD5, **{**FAST, "progress": True})
    captured = capsys.readouterr()
    assert captured.out == ""  # progress goes to stderr only
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD


def test_fetch_remote_uses_registry_entry(server, tmp_path):
    server.cfg["files"]["/gz2_train_catalog.parquet"] = PAYLOAD
    remote = GZ2_FILES["gz2_train_catalog.parquet"]
    local = RemoteFile(remote.name, (server.url("/gz2_train_catalog.parquet"),), md5=PAYLOAD_MD5)
    out = fetch_remote(local, tmp_path, **FAST)
    assert out == tmp_path / "gz2_train_catalog.parquet"


def test_registry_contents():
    assert GZ2_FILES["gz2_train_catalog.parquet"].md5 == "d5507a9332c75fd84a7f2562567da36b"
    assert GZ2_FILES["gz2_test_catalog.parquet"].md5 == "ac1fba88d0e8a95ee4f4eef79ea03063"
    assert GZ2_FILES["images_gz2.tar.gz"].md5 == "e3eab2fec57a6a60577236b9e0a6913d"
    for f in GZ2_FILES.values():
        assert f.urls and all(u.startswith("https://") for u in f.urls)
    with pytest.raises(ValueError):
        RemoteFile("x", ("https://example.invalid/x",), md5="not-an-md5")


# ----------------------------------------------------------------- extraction
def _make_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("maker,suffix", [(_make_tar, ".tar.gz"), (_make_zip, ".zip")])
def test_extract_and_marker(tmp_path, maker, suffix):
    archive = maker(tmp_path / f"a{suffix}", {"images/587722/587722981741363294.jpg": b"jpg1",
                                               "images/588009/588009368545984617.jpg": b"jpg2"})
    out = tmp_path / "out"
    assert extract(archive, out, progress=False) == out
    assert (out / "images/587722/587722981741363294.jpg").read_bytes() == b"jpg1"
    marker = out / f".{archive.name}.extracted"
    assert marker.exists()
    # complete: a second call does nothing (a deleted member stays deleted)
    (out / "images/588009/588009368545984617.jpg").unlink()
    extract(archive, out, progress=False)
    assert not (out / "images/588009/588009368545984617.jpg").exists()
    # interrupted (no marker): redone
    marker.unlink()
    extract(archive, out, progress=False)
    assert (out / "images/588009/588009368545984617.jpg").read_bytes() == b"jpg2"


@pytest.mark.parametrize("maker,suffix", [(_make_tar, ".tar.gz"), (_make_zip, ".zip")])
@pytest.mark.parametrize("evil", ["../escape.txt", "/abs/escape.txt", "images/../../escape.txt"])
def test_extract_rejects_path_traversal(tmp_path, maker, suffix, evil):
    archive = maker(tmp_path / f"evil{suffix}", {"images/ok.jpg": b"ok", evil: b"pwned"})
    out = tmp_path / "sub" / "out"
    with pytest.raises(ArchiveError, match="outside"):
        extract(archive, out, progress=False)
    assert not (tmp_path / "sub" / "escape.txt").exists()
    assert not (tmp_path / "escape.txt").exists()
    assert not (out / "images" / "ok.jpg").exists()  # checked before anything is written
    assert not (out / f".{archive.name}.extracted").exists()


@pytest.mark.parametrize("maker,suffix", [(_make_tar, ".tar.gz"), (_make_zip, ".zip")])
def test_extracted_files_take_the_umask_not_the_archives_modes(tmp_path, maker, suffix):
    """An archive's exec or world-write bits never reach the disk: files get 0o666 & ~umask."""
    archive = tmp_path / f"modes{suffix}"
    if maker is _make_tar:
        with tarfile.open(archive, "w:gz") as tf:
            for name, mode in (("images/run.sh", 0o755), ("images/ww.jpg", 0o666)):
                info = tarfile.TarInfo(name)
                info.size, info.mode = 2, mode
                tf.addfile(info, io.BytesIO(b"ok"))
    else:
        with zipfile.ZipFile(archive, "w") as zf:
            for name, mode in (("images/run.sh", 0o755), ("images/ww.jpg", 0o666)):
                info = zipfile.ZipInfo(name)
                info.external_attr = (0o100000 | mode) << 16
                zf.writestr(info, b"ok")
    old = os.umask(0o077)
    try:
        extract(archive, tmp_path / "out", progress=False)
    finally:
        os.umask(old)
    for name in ("run.sh", "ww.jpg"):
        assert (tmp_path / "out" / "images" / name).stat().st_mode & 0o777 == 0o600, name


def test_extract_rejects_symlink_out(tmp_path):
    archive = tmp_path / "link.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("images/link")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../etc/passwd"
        tf.addfile(info)
    with pytest.raises(ArchiveError, match="outside"):
        extract(archive, tmp_path / "out", progress=False)


def test_extract_corrupt_archive_is_clear(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ArchiveError, match="broken.tar.gz"):
        extract(archive, tmp_path / "out", progress=False)


def test_unverified_file_changed_since_download_is_refetched(server, tmp_path):
    server.cfg["files"]["/f.bin"] = PAYLOAD
    with pytest.warns(UnverifiedDownloadWarning):
        out = fetch(server.url("/f.bin"), tmp_path / "f.bin", None, **FAST)
    out.write_bytes(b"tampered")
    with pytest.warns(UnverifiedDownloadWarning) as record:
        fetch(server.url("/f.bin"), out, None, **FAST)
    assert any("no longer matches" in str(w.message) for w in record)
    assert out.read_bytes() == PAYLOAD
    assert (tmp_path / "f.bin.corrupt").read_bytes() == b"tampered"
