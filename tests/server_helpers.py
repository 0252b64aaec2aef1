"""Helpers of the tests that start servers (GUI, viewer, torchrun) and drive them in a browser: a free loopback
port, Debian's chromium under Playwright, and the rule for a missing browser tool (fail under CI, skip
otherwise)."""
import os
import shutil
import socket

import pytest

#: Debian's chromium (``apt-get install chromium``), or None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

#: flags for a headless chromium without GPU, network chatter or sandbox (software WebGL through SwiftShader)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(what: str, ok: bool) -> None:
    """Fail (under CI, where ``make test`` installs it) or skip when ``what`` is missing."""
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"CI: {what} is missing (make test installs it; chromium: apt-get install chromium)")
        pytest.skip(f"needs {what}")


def require_browser() -> None:
    """Playwright and Debian's chromium, or fail / skip (see :func:`require`)."""
    import importlib.util

    require("playwright", importlib.util.find_spec("playwright") is not None)
    require("Debian's chromium", CHROMIUM is not None)


def launch_chromium(playwright):
    """Headless chromium of a ``sync_playwright()`` context."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
