"""The tutorial's chat (examples/js_chat.py, docs/tutorial/js-chat.md) in two headless Chromium
pages: a line typed in one appears in both, and the answer comes back the same way."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

from tests.support.browser import ROOT, chromium, watch_errors
from tests.support.procutil import Process

EXAMPLE = ROOT / "examples" / "js_chat.py"
PAGE = ROOT / "examples" / "static" / "js_chat.html"
LISTENING = re.compile(r"listening on http://[\d.]+:(\d+)/")


def test_the_chat_page_is_under_40_lines():
    assert len(PAGE.read_text().splitlines()) < 40


async def log_of(page) -> list[str]:
    return await page.locator("#log li").all_inner_texts()


async def say(page, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


def test_two_pages_chat_through_the_example():
    async def scenario(port: int) -> None:
        async with chromium() as browser:
            ada, bob = await browser.new_page(), await browser.new_page()
            errors = watch_errors(ada) + watch_errors(bob)
            for page, name in ((ada, "ada"), (bob, "bob")):
                await page.goto(f"http://127.0.0.1:{port}/?name={name}")
                await page.wait_for_selector("#text:not([disabled])", timeout=10000)
            await say(ada, "hello bob")
            for page in (ada, bob):
                await page.wait_for_function("document.querySelectorAll('#log li').length === 1", timeout=5000)
            await say(bob, "hi ada")
            for page in (ada, bob):
                await page.wait_for_function("document.querySelectorAll('#log li').length === 2", timeout=5000)
                assert await log_of(page) == ["ada: hello bob", "bob: hi ada"]
            assert await ada.input_value("#text") == ""
            assert not errors, errors

    process = Process([sys.executable, str(EXAMPLE), "--port", "0"], env=dict(os.environ), cwd=str(ROOT))
    try:
        [listening] = process.wait_for_lines(LISTENING)
        asyncio.run(asyncio.wait_for(scenario(int(listening.group(1))), 60.0))
        process.signal(signal.SIGTERM)
        assert process.wait(10.0) == 0, process.stderr_text()
    finally:
        process.stop()
