"""The code base stays ruff-clean (configuration in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_clean() -> None:
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    try:
        out = subprocess.run(
            [*cmd, "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
    except FileNotFoundError:
        pytest.fail("ruff is not installed; it is part of the [test] extra")
    assert out.returncode == 0, out.stdout + out.stderr


def test_public_api_is_declared() -> None:
    import curvax

    for name in curvax.__all__:
        assert hasattr(curvax, name), name
