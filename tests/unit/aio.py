"""Run a coroutine to completion from a synchronous unit test.

In its own thread, on a fresh loop: in a full run the session's Playwright driver (tests/browser.py)
keeps an asyncio loop running on the main thread, where asyncio.run() refuses to start.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor


def run(coro):
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()
