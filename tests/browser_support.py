"""The browser the website and JupyterLab tests drive: Debian's Chromium through Playwright."""

import os
import shutil

import pytest


def chromium():
    """The Chromium executable Playwright drives, or skip (fail under CI) with one line saying how to get it."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
    if not path:
        message = (
            "browser tests need Chromium and Playwright: `sudo apt-get install chromium` and `pip install -e '.[test]'`"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
