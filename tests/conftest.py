"""Shared pytest fixtures: location of the golden data produced by the original implementation; test markers.

Golden data live in ``../shared/golden`` (relative to the repository root) unless ``MONST3R_GOLDEN`` points
elsewhere. When the folder is absent, golden tests skip with a clear reason; when the ``CI`` environment variable
is set, absence is a failure instead. Tests (and fixtures) reach the golden data only through the ``golden``
fixture, so that the ``golden`` marker can be given here (:func:`pytest_collection_modifyitems`).

Markers (registered in pyproject.toml, ``--strict-markers``): ``golden`` (reads the golden data: given
automatically to every test that uses the ``golden`` fixture, directly or through another fixture), ``dist``
(several processes: torchrun / gloo), ``browser`` (Playwright + chromium), ``slow`` (the long tests: subprocess
demo runs, torchrun, golden optimizer runs, browser, ...; marked in the test files). ``pytest -m "not slow"``
(``make test-fast``) is the developer's quick answer; ``make test`` runs everything.
"""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def golden_root() -> Path:
    return Path(os.environ.get("MONST3R_GOLDEN", REPO_ROOT.parent / "shared" / "golden"))


def require_golden(*parts: str) -> Path:
    """Return ``golden_root()/parts``; skip (or fail under CI) when it does not exist."""
    path = golden_root().joinpath(*parts)
    if not path.exists():
        msg = f"golden data not found at {path} (set MONST3R_GOLDEN to the shared/golden folder)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def golden():
    """``golden('model', 'forward.npz')`` -> Path, skipping/failing when absent."""
    return require_golden


@pytest.fixture
def demo_frames() -> Path:
    path = REPO_ROOT.parent / "shared" / "demo_data" / "lady-running"
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"demo frames not found at {path}")
        pytest.skip(f"demo frames not found at {path}")
    return path


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (stable timings and numerics on a shared 2-core machine); modules opt in
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(items):
    """Every test that uses the ``golden`` fixture (directly or through other fixtures) gets the ``golden`` mark."""
    for item in items:
        if "golden" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.golden)
