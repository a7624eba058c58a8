"""Open an HTML page in headless Chromium and check that it rendered (test helper).

* :func:`ensure_chromium` finds Chromium (``$CHROMIUM``, ``chromium``,
  ``chromium-browser``); when it is missing and we are root with apt-get, it
  runs ``scripts/install-test-system-deps.sh`` once; otherwise it skips the
  test with the reason.
* :func:`check_page` loads a page, lists every ``<img>`` that did not load
  (``complete && naturalWidth > 0``), records any request to a non-``file:``/
  ``data:`` URL (and blocks it), and saves a full-page screenshot to
  ``test-artifacts/<name>.png``.

Two routes: the ``playwright`` Python package driving the system Chromium
(``executable_path``; preferred), or raw ``chromium --headless --dump-dom``
with a small probe script injected into a copy of the page.  Set
``GZMORPH_BROWSER_ROUTE=raw`` to force the second.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
INSTALL_SCRIPT = ROOT / "scripts" / "install-test-system-deps.sh"

# flags that work here (root, no display, no network)
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--mute-audio", "--force-color-profile=srgb",
]

_install_attempt: dict = {}


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).is_file() and os.access(env, os.X_OK) else shutil.which(env)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(path).is_file():
            return path
    return None


def ensure_chromium() -> str:
    """The Chromium binary; installs it once (root + apt) or skips the calling test."""
    found = find_chromium()
    if found:
        return found
    if os.environ.get("CHROMIUM"):
        pytest.skip(f"$CHROMIUM={os.environ['CHROMIUM']!r} is not an executable")
    can_install = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") and INSTALL_SCRIPT.is_file()
    if not can_install:
        pytest.skip("Chromium not found (looked for $CHROMIUM, chromium, chromium-browser); install it with "
                    "`sudo scripts/install-test-system-deps.sh` or set $CHROMIUM")
    if "result" not in _install_attempt:
        proc = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=1200)
        _install_attempt["result"] = proc
    proc = _install_attempt["result"]
    found = find_chromium()
    if not found:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        pytest.skip(f"Chromium not found and {INSTALL_SCRIPT.name} failed (rc={proc.returncode}): "
                    + " | ".join(tail))
    return found


@dataclass
class PageCheck:
    """What the browser saw. ``failures`` names each image that did not load."""

    route: str
    title: str
    n_images: int
    n_loaded: int
    failures: list[str] = field(default_factory=list)
    external_requests: list[str] | None = None  # None: not observable on this route
    console_errors: list[str] = field(default_factory=list)
    page_height: int = 0
    screenshot: Path | None = None


_PROBE_JS = """() => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0));
  return {
    title: document.title,
    n_images: imgs.length,
    n_loaded: imgs.length - bad.length,
    failures: bad.map(i => (i.alt || '(no alt)') + ' <' + (i.getAttribute('src') || '').slice(0, 48) + '>'),
    height: Math.ceil(document.documentElement.scrollHeight),
  };
}"""


def _route() -> str:
    forced = os.environ.get("GZMORPH_BROWSER_ROUTE")
    if forced:
        if forced not in ("playwright", "raw"):
            raise ValueError(f"GZMORPH_BROWSER_ROUTE must be 'playwright' or 'raw', not {forced!r}")
        return forced
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "raw"
    return "playwright"


def check_page(html_path: str | Path, name: str, *, width: int = 1280, height: int = 900,
               route: str | None = None, screenshot: bool = True, timeout_s: float = 60) -> PageCheck:
    """Load ``html_path`` in headless Chromium; return what loaded; screenshot to test-artifacts/<name>.png."""
    chromium = ensure_chromium()
    html_path = Path(html_path).resolve()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"screenshot name {name!r}: letters, digits, '_', '-', '.' only")
    shot = ARTIFACTS / f"{name}.png" if screenshot else None
    if shot is not None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot.unlink(missing_ok=True)
    route = route or _route()
    with tempfile.TemporaryDirectory(prefix="gzmorph-chromium-") as profile:
        if route == "playwright":
            return _check_playwright(chromium, html_path, shot, width, height, profile, timeout_s)
        if route == "raw":
            return _check_raw(chromium, html_path, shot, width, height, profile, timeout_s)
    raise ValueError(f"unknown route {route!r}")


def _check_playwright(chromium, html_path, shot, width, height, profile, timeout_s) -> PageCheck:
    from playwright.sync_api import sync_playwright

    external: list[str] = []
    console: list[str] = []

    def gate(r):
        url = r.request.url
        if url.startswith(("file:", "data:", "about:")):
            r.continue_()
        else:
            external.append(url)
            r.abort()

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": height}, device_scale_factor=1, offline=True)
        try:
            ctx.set_default_timeout(timeout_s * 1000)
            ctx.route("**/*", gate)
            page = ctx.new_page()
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console.append(str(e)))
            page.goto(html_path.as_uri(), wait_until="load")
            page.evaluate("() => Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
            res = page.evaluate(_PROBE_JS)
            if shot is not None:
                page.screenshot(path=str(shot), full_page=True)
        finally:
            ctx.close()
    return PageCheck("playwright", res["title"], res["n_images"], res["n_loaded"], res["failures"],
                     external, console, res["height"], shot)


_RAW_PROBE = """<script>
window.addEventListener('load', () => {
  const probe = (%s)();
  const pre = document.createElement('pre');
  pre.id = 'gzmorph-probe';
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
});
</script>"""


def _run_chromium(chromium, args, profile, timeout_s) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed (rc={proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def _check_raw(chromium, html_path, shot, width, height, profile, timeout_s) -> PageCheck:
    text = html_path.read_text(encoding="utf-8")
    probe = _RAW_PROBE % _PROBE_JS
    probed = text.replace("</body>", probe + "</body>", 1) if "</body>" in text else text + probe
    # the copy sits next to the page so relative URLs resolve the same way
    copy = html_path.with_name(f".{html_path.stem}.probe.html")
    copy.write_text(probed, encoding="utf-8")
    try:
        proc = _run_chromium(chromium, ["--virtual-time-budget=10000", f"--window-size={width},{height}",
                                        "--dump-dom", copy.as_uri()], profile, timeout_s)
        m = re.search(r'<pre id="gzmorph-probe">(.*?)</pre>', proc.stdout, re.S)
        if not m:
            raise RuntimeError("the probe did not run (no load event?); chromium stderr: " + proc.stderr[-1000:])
        import html as _html

        res = json.loads(_html.unescape(m.group(1)))
        if shot is not None:
            h = max(height, min(int(res["height"]) + 40, 16000))
            _run_chromium(chromium, [f"--window-size={width},{h}", f"--screenshot={shot}", html_path.as_uri()],
                          profile, timeout_s)
    finally:
        copy.unlink(missing_ok=True)
    return PageCheck("raw", res["title"], res["n_images"], res["n_loaded"], res["failures"],
                     None, [], res["height"], shot)
