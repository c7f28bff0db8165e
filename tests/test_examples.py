"""Every script in ``examples/`` runs at small size and recovers its true parameters.

Each example exposes ``main(argv) -> dict`` with the true values (``truth``), the
estimates (``estimate``) and their standard errors (``stderr``) keyed by name.  The
scripts are imported and run in this process (not in subprocesses) so that they share
one JAX start-up; their figures go to ``tmp_path``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))

# The estimates must lie within Z_MAX standard errors of the truth.  The seeds are
# fixed, so this is deterministic; 4 leaves room for a different BLAS or JAX version.
Z_MAX = 4.0
# ...and the standard errors must be informative (not an easy pass by a huge error).
MAX_RELATIVE_STDERR = 0.5

DOMAINS = ("physics", "chemistry", "biology", "engineering")


def load_example(path: Path) -> ModuleType:
    """Import ``path`` as a fresh module (not registered in ``sys.modules``).

    The examples import their shared helpers (``examples/_tools.py``) the way a script
    run from that folder does, so the folder goes on ``sys.path`` first.
    """
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"curvax_example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def has_matplotlib() -> bool:
    """Whether the optional plotting dependency is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def test_examples_cover_every_domain() -> None:
    stems = [p.stem for p in EXAMPLES]
    assert len(stems) >= 11, stems
    for domain in DOMAINS:
        assert sum(s.startswith(domain + "_") for s in stems) >= 2, (domain, stems)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_documented_and_has_a_cli(path: Path, capsys: pytest.CaptureFixture) -> None:
    module = load_example(path)
    assert module.__doc__ and "Run:" in module.__doc__, "state how to run it"
    assert callable(module.main)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert "--small" in usage and "--out" in usage


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_recovers_the_truth(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    module = load_example(path)
    out: dict[str, Any] = module.main(["--small", "--out", str(tmp_path)])
    printed = capsys.readouterr().out

    assert out["success"], printed
    truth, estimate, stderr = out["truth"], out["estimate"], out["stderr"]
    assert truth, "an example must compare at least one estimate with a true value"
    for name, true in truth.items():
        est, err = float(estimate[name]), float(stderr[name])
        assert math.isfinite(est) and math.isfinite(err), (name, est, err)
        assert 0.0 < err < MAX_RELATIVE_STDERR * abs(true), (name, err, true)
        z = (est - true) / err
        assert abs(z) <= Z_MAX, f"{name}: estimate {est:.6g}, truth {true:.6g}, z = {z:.2f}"
        assert name in printed, f"the report should show {name}"

    if has_matplotlib():
        figure = Path(out["figure"])
        assert figure.parent == tmp_path
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert out["figure"] is None

    check = EXTRA_CHECKS.get(path.stem)
    if check is not None:
        check(out)


def _dose_response(out: dict[str, Any]) -> None:
    lo, hi = out["ec50_interval"]
    assert lo < out["truth"]["ec50"] < hi
    assert lo < out["estimate"]["ec50"] < hi


def _growth_curve(out: dict[str, Any]) -> None:
    assert out["best_model"] == "gompertz"  # the data were made with the Gompertz law


def _enzyme_kinetics(out: dict[str, Any]) -> None:
    # the direct fit beats the Lineweaver–Burk line for both parameters
    for name in ("vmax", "km"):
        direct = abs(out["estimate"][name] - out["truth"][name])
        assert direct < abs(out["lineweaver_burk"][name] - out["truth"][name])


def _sensor_calibration(out: dict[str, Any]) -> None:
    unknown = out["unknown"]
    lo, hi = unknown["interval"]
    assert lo < unknown["truth"] < hi
    assert lo < unknown["estimate"] < hi
    assert hi - lo < 10.0  # °C: a calibration that is actually useful


def _radioactive_decay(out: dict[str, Any]) -> None:
    assert 0.5 < out["redchi"] < 2.0  # Poisson weights make chi2/dof about 1


EXTRA_CHECKS = {
    "biology_dose_response": _dose_response,
    "biology_growth_curve": _growth_curve,
    "biology_enzyme_kinetics": _enzyme_kinetics,
    "engineering_sensor_calibration": _sensor_calibration,
    "physics_radioactive_decay": _radioactive_decay,
}
