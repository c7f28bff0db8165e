"""``curvax.core.fast_math``: which vectorised replacements a fit's model gets."""

from __future__ import annotations

import pytest

import curvax.core.fast_div as fdv
import curvax.core.fast_log as fl
import curvax.core.fast_math as fm
import curvax.core.fast_pow as fp
import curvax.core.fast_trig as ft
from curvax.core.fast_math import enabled_kinds


@pytest.mark.parametrize(("module", "kind"), [(fp, "pow"), (ft, "trig"), (fdv, "div"), (fl, "log")])
def test_each_switch_reads_the_environment(module, kind, monkeypatch):
    assert fm.SWITCHES[kind] == module.ENV_VAR
    fm.switched_off.cache_clear()
    try:
        monkeypatch.setenv(module.ENV_VAR, "0")
        assert fm.switched_off(module.ENV_VAR)
        assert kind not in enabled_kinds("cpu")
        fm.switched_off.cache_clear()
        monkeypatch.delenv(module.ENV_VAR)
        assert not fm.switched_off(module.ENV_VAR)
        assert kind in enabled_kinds("cpu")
        assert enabled_kinds("gpu") == frozenset()
    finally:
        fm.switched_off.cache_clear()
