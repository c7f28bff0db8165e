"""``curvax.core.fast_math``: which vectorised replacements a fit's model gets."""

from __future__ import annotations

import pytest

import curvax.core.fast_pow as fp
import curvax.core.fast_trig as ft
from curvax.core.fast_math import enabled_kinds


@pytest.mark.parametrize(("module", "kind"), [(fp, "pow"), (ft, "trig")])
def test_each_switch_reads_the_environment(module, kind, monkeypatch):
    module._switched_off.cache_clear()
    try:
        monkeypatch.setenv(module.ENV_VAR, "0")
        assert not module.enabled("cpu")
        assert kind not in enabled_kinds("cpu")
        module._switched_off.cache_clear()
        monkeypatch.delenv(module.ENV_VAR)
        assert module.enabled("cpu") and not module.enabled("gpu")
        assert kind in enabled_kinds("cpu")
        assert enabled_kinds("gpu") == frozenset()
    finally:
        module._switched_off.cache_clear()
