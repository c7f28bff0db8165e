"""The notebooks in ``notebooks/`` run headless, end to end, and find the right numbers.

Each notebook is executed in a fresh Jupyter kernel (nbclient, kernel ``python3``) from
the ``notebooks/`` folder, importing the same curvax as this test process.  A cell that
raises fails the test; every notebook ends with a "Check" cell that asserts its fitted
values against the truth it simulated, and prints ``all checks passed``.  On top of
that, the quickstart's printed estimates are compared with an independent SciPy fit of
the same bundled data.
"""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
EXPECTED = ("01_quickstart.ipynb", "02_tutorial.ipynb", "03_advanced.ipynb")
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell: generous for a slow CI machine
PASSED = "all checks passed"


def kernel_env() -> dict[str, str]:
    """The test's environment, with the imported curvax first on the kernel's path.

    In a checkout (``PYTHONPATH=.``) that is the checkout; in CI, where curvax is
    pip-installed, it is the installed package: either way the notebook tests the
    curvax this test process imports.  The kernel draws figures inline (as in Jupyter),
    whatever ``MPLBACKEND`` says.
    """
    import curvax

    src = str(Path(curvax.__file__).resolve().parents[1])
    env = dict(os.environ)
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = src if not rest else os.pathsep.join([src, rest])
    env.pop("MPLBACKEND", None)
    return env


def execute(path: Path) -> nbformat.NotebookNode:
    """Run ``path`` in a new kernel (cwd ``notebooks/``); raises on the first error."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(NB_DIR)}},
    )
    client.execute(env=kernel_env())
    return nb


def stdout_of(nb: nbformat.NotebookNode) -> str:
    return "\n".join(
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stdout"
    )


def code_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def test_the_three_notebooks_are_committed_executed_with_plots() -> None:
    assert tuple(p.name for p in NOTEBOOKS) == EXPECTED
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        cells = code_cells(nb)
        assert all(c.get("execution_count") for c in cells), f"{path.name}: not executed"
        outputs = [o for c in cells for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], path.name
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name}: no plot"
        last = cells[-1]
        assert "assert" in last.source, f"{path.name}: the last cell should check the results"
        assert PASSED in stdout_of(nb), f"{path.name}: committed without passing its checks"
        headings = [c.source for c in nb.cells if c.cell_type == "markdown"]
        assert any(h.lstrip().startswith("## Check") for h in headings), path.name


# The quickstart runs in every test run; the tutorial and the advanced notebook (about a
# minute of CPU between them) with the slow set.  Their committed outputs are checked
# above in every run.
RUNS = [
    p if p.name == "01_quickstart.ipynb" else pytest.param(p, marks=pytest.mark.slow)
    for p in NOTEBOOKS
]


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.stem)
def test_notebook_runs_and_passes_its_checks(path: Path) -> None:
    nb = execute(path)  # a cell error raises CellExecutionError here
    out = stdout_of(nb)
    assert PASSED in out
    if path.name == "01_quickstart.ipynb":
        check_quickstart_against_scipy(out)


def check_quickstart_against_scipy(out: str) -> None:
    """The weighted fit printed by the quickstart equals SciPy's on the same file."""
    optimize = pytest.importorskip("scipy.optimize")
    csv = str(resources.files("curvax").joinpath("data", "decay.csv"))
    data = np.genfromtxt(csv, delimiter=",", names=True)
    t, y, dy = data["time"], data["signal"], data["uncertainty"]

    def decay(t, amplitude, tau, offset):
        return amplitude * np.exp(-t / tau) + offset

    popt, pcov = optimize.curve_fit(
        decay, t, y, p0=[2.5, 2.0, 0.3], sigma=dy, absolute_sigma=True, xtol=1e-14, ftol=1e-14
    )
    # the report table of section 3: "  tau     2.19842583    0.01994   0.91%"
    section = out.split("parameter", 1)[1]
    for name, ref, ref_err in zip(("amplitude", "tau", "offset"), popt, np.sqrt(np.diag(pcov))):
        m = re.search(rf"^\s+{name}\s+(\S+)\s+(\S+)", section, re.MULTILINE)
        assert m is not None, f"no {name} row in the report"
        value, err = float(m.group(1)), float(m.group(2))
        assert value == pytest.approx(ref, rel=1e-7), name
        assert err == pytest.approx(ref_err, rel=1e-3), name
