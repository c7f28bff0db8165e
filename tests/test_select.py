"""``curvax.core.select.where``: ``jnp.where`` without a nested ``jit``.

It must give exactly what ``jnp.where`` gives — values, shape, dtype and weak type — for
every mix of conditions and operands the solver uses (arrays of both float widths,
integers, booleans, Python numbers, infinities, broadcasting), with 64-bit mode on and
off, eagerly and under ``jit``; and it must trace to a single ``select``.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvax.core.select import where


def _operands() -> list:
    return [
        0.0, 1, True, -np.inf, np.float32(2.5),
        np.array([1.0, 2.0, 3.0]), jnp.asarray([1.0, 2.0, 3.0], jnp.float32),
        jnp.asarray([[4.0], [5.0]]), jnp.asarray([1, 2, 3]), jnp.asarray(2.0) * 1.0,
    ]


def _conditions() -> list:
    rng = np.random.default_rng(0)
    return [
        np.array(True), np.array([True, False, True]), rng.random((2, 3)) > 0.5,
        jnp.asarray([0.0, 1.0, 2.0]),
    ]


@pytest.mark.parametrize("x64", [True, False])
def test_where_equals_jnp_where(x64: bool) -> None:
    # eagerly, values and all; traced (as in a fit program), shape, dtype and weak type
    checked = 0
    with jax.enable_x64(x64):
        for c, x, y in itertools.product(_conditions(), _operands(), _operands()):
            try:
                ref = jnp.where(c, x, y)
            except (TypeError, ValueError):  # shapes that do not broadcast
                with pytest.raises((TypeError, ValueError)):
                    where(c, x, y)
                continue
            got = where(c, x, y)
            assert got.shape == ref.shape, (c, x, y)
            assert got.dtype == ref.dtype, (c, x, y, got.dtype, ref.dtype)
            assert got.aval.weak_type == ref.aval.weak_type, (c, x, y)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
            traced = jax.eval_shape(lambda c, x, y: where(c, x, y), c, x, y)
            traced_ref = jax.eval_shape(lambda c, x, y: jnp.where(c, x, y), c, x, y)
            assert (traced.shape, traced.dtype, traced.weak_type) == (
                traced_ref.shape, traced_ref.dtype, traced_ref.weak_type
            ), (c, x, y)
            checked += 1
    assert checked > 250


def test_where_traces_to_one_select_without_a_nested_jit() -> None:
    with jax.enable_x64(True):
        args = (jnp.ones(5, bool), jnp.ones(5))
        ours = jax.make_jaxpr(lambda m, r: where(m, r, 0.0))(*args).jaxpr
        theirs = jax.make_jaxpr(lambda m, r: jnp.where(m, r, 0.0))(*args).jaxpr
    names = [e.primitive.name for e in ours.eqns]
    assert names.count("select_n") == 1 and "jit" not in names, names
    assert "jit" in [e.primitive.name for e in theirs.eqns]  # what it avoids
