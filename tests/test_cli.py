"""The command line: fit a bundled CSV, list models, clean errors with exit codes."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from curvax import FitResult
from curvax.cli import EXIT_BAD_INPUT, EXIT_OK, main

DECAY = str(resources.files("curvax").joinpath("data", "decay.csv"))


def test_fit_bundled_csv_writes_report_json_and_png(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    rc = main(["fit", DECAY, "--model", "exp_decay", "--sigma", "uncertainty", "--out",
               str(out)])
    assert rc == EXIT_OK
    text = capsys.readouterr().out
    assert "amplitude" in text and "tau" in text and "converged" in text
    res = FitResult.from_json(str(out / "result.json"))
    # the file was generated with amplitude 2.5, tau 2.2, offset 0.3
    np.testing.assert_allclose(res.x, [2.5, 2.2, 0.3], rtol=0.05)
    assert (out / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "result.json").read_text())["param_names"] == [
        "amplitude", "tau", "offset"]


def test_fit_closes_the_figure_it_writes(tmp_path) -> None:
    """Regression: ``--out`` left its figure open in pyplot (shown again in notebooks)."""
    plt = pytest.importorskip("matplotlib.pyplot")
    before = set(plt.get_fignums())
    assert main(["fit", DECAY, "--model", "exp_decay", "--out", str(tmp_path)]) == EXIT_OK
    assert set(plt.get_fignums()) == before


def test_fit_with_fixed_parameter_and_user_model_file(tmp_path, capsys) -> None:
    mod = tmp_path / "mymodels.py"
    mod.write_text("import jax.numpy as jnp\n"
                   "def decay(t, a, tau, c):\n    return a * jnp.exp(-t / tau) + c\n")
    rc = main(["fit", DECAY, "--model", f"{mod}:decay", "--x", "time", "--y", "signal",
               "--p0", "1,1,0", "--fix", "c=0.3"])
    assert rc == EXIT_OK
    assert "0.3" in capsys.readouterr().out


def test_models_lists_parameters(capsys) -> None:
    assert main(["models"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "gaussian" in out and "amplitude, center, sigma" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "/no/such/file.csv", "--model", "exp_decay"], "no such file"),
        (["fit", DECAY, "--model", "no_such_model"], "unknown model"),
        (["fit", DECAY, "--model", "exp_decay", "--y", "nope"], "no column 'nope'"),
        (["fit", DECAY, "--model", "exp_decay", "--p0", "1,x,3"], "--p0"),
        (["fit", DECAY, "--model", "exp_decay", "--bounds", "0,0,0"], "--bounds"),
        (["fit", DECAY, "--model", "exp_decay", "--fix", "tau"], "--fix"),
        (["fit", DECAY, "--model", "exp_decay", "--p0", "1,2"], "p0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys) -> None:
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_non_numeric_cells(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n2,abc\n")
    assert main(["fit", str(bad), "--model", "linear"]) == EXIT_BAD_INPUT
    assert "non-numeric" in capsys.readouterr().err


def test_demo_runs(capsys) -> None:
    assert main(["demo"]) == EXIT_OK
    assert "certified" in capsys.readouterr().out
