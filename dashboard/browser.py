"""Headless Chromium for the dashboard's browser tests and benchmark.

Always Debian's `/usr/bin/chromium` (`scripts/ensure-test-tools` installs it), driven by
Playwright; never a browser Playwright downloads.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing() -> str:
    """Why no browser can be started here, or ''."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing: run scripts/ensure-test-tools (apt-get install -y chromium)"
    return ""


@contextmanager
def chromium(playwright, **context_options) -> Iterator:
    """A browser context on a fresh profile, closed and removed afterwards."""
    if why := missing():
        raise RuntimeError(why)
    profile = tempfile.mkdtemp(prefix="tcp-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        headless=True,
        args=FLAGS,
        viewport={"width": 1400, "height": 800},
        **context_options,
    )
    try:
        yield context
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)
