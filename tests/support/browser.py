"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright
(never a downloaded browser), a fresh profile per launch, and the page server of
tests/support/page_server.py as a process."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Optional

from playwright.async_api import BrowserContext, Page, async_playwright

from .procutil import HOST, Process, free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
PAGE_SERVER = Path(__file__).with_name("page_server.py")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[BrowserContext]:
    """A browser context of a new headless Chromium with an empty user-data-dir."""
    with tempfile.TemporaryDirectory(prefix="uws-py-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                yield context
            finally:
                await context.close()


def watch_errors(page: Page) -> list[str]:
    """Collects the page's uncaught errors and console errors, for the test to assert empty."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on("console", lambda message: errors.append(f"console.{message.type}: {message.text}")
            if message.type == "error" else None)
    return errors


async def open_zero_loss_page(browser: BrowserContext, http: str) -> tuple[Page, list[str]]:
    """A new page on ``{http}/pages/zero_loss.html`` once its module (the JS client) loaded,
    and the list its errors go to (:func:`watch_errors`)."""
    page = await browser.new_page()
    errors = watch_errors(page)
    await page.goto(f"{http}/pages/zero_loss.html")
    await page.wait_for_function("window.moduleLoaded === true", timeout=10000)
    return page, errors


@contextlib.contextmanager
def page_server(pages: Path, *, history: tuple[str, ...] = (), jwt_secret: Optional[str] = None,
                recover_limit: Optional[int] = None) -> Iterator[Any]:
    """Runs tests/support/page_server.py on a free port; yields an object with ``port``,
    ``http`` (the base URL) and ``ws`` (the realtime endpoint). Stopped by PID."""
    port = free_port()
    argv = [sys.executable, str(PAGE_SERVER), str(port), str(pages)]
    for pattern in history:
        argv += ["--history", pattern]
    if jwt_secret:
        argv += ["--jwt-secret", jwt_secret]
    if recover_limit is not None:
        argv += ["--recover-limit", str(recover_limit)]
    # The same interpreter and environment as the tests: it imports the uws_py they import.
    process = Process(argv, env=dict(os.environ), cwd=str(ROOT))
    try:
        process.wait_for_lines(re.compile(r"listening on \d+"))
        yield _Served(process, port)
    finally:
        process.stop()


class _Served:
    def __init__(self, process: Process, port: int) -> None:
        self.process = process
        self.port = port
        self.http = f"http://{HOST}:{port}"
        self.ws = f"ws://{HOST}:{port}/realtime"
