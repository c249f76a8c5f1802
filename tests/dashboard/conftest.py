"""A real headless browser for the dashboard's tests: Debian's chromium driven by Playwright.

Playwright is told to use the system's chromium (``executable_path``); it never
downloads a browser of its own. ``make test`` installs chromium when it is
missing and it runs as root (CI); elsewhere these tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

TOKEN = "s3cret-token"
CHROMIUM = os.environ.get("OTA_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[test]')"
    )
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"no chromium at {CHROMIUM}: `make browser` installs Debian's (as root), or set OTA_TEST_CHROMIUM"
        )
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, tmp_path: Path) -> Iterator[object]:
    """A fresh page (own cookies and storage), 1280x900; ``page.shot(name)`` saves a PNG under tmp_path.

    Set OTA_SCREENSHOT_DIR to keep the screenshots (that is how docs/img/dashboard.png is made).
    """
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))

    def shot(name: str) -> Path:
        out = Path(os.environ.get("OTA_SCREENSHOT_DIR") or tmp_path) / f"{name}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(out), full_page=True)
        return out

    pg.shot = shot  # type: ignore[attr-defined]
    pg.js_errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        ctx.close()


@pytest.fixture
def dashboard(registry_server):
    """The registry's dashboard on a free port, token auth, campaigns derived on every read."""
    from server.campaigns.manager import CampaignManager
    from server.dashboard.source import RegistrySource
    from server.dashboard.web import DashboardAuth, serve_dashboard

    # refresh_s=0: campaign state derived on every read, so the page sees each report at once.
    reg = registry_server.registry
    reg.rollouts = CampaignManager(reg.store, refresh_s=0)
    dash = serve_dashboard("127.0.0.1:0", RegistrySource(reg), DashboardAuth(TOKEN))
    yield dash
    dash.stop()
