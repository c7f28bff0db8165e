"""Values packed into one uint32 operand for a host callback (curvax.core.wire).

Reference: the values themselves, bit for bit (NaN payloads, -0.0, subnormals, ±inf).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from curvax.core.wire import pack_words, unpack_words, words_layout


def test_values_cross_bit_for_bit() -> None:
    special = np.array([-0.0, 5e-324, np.inf, -np.inf, 1.7976931348623157e308, np.pi])
    nan_payload = np.array([0x7FF8_0000_DEAD_BEEF], dtype=np.uint64).view(np.float64)
    with jax.enable_x64(True):
        values = (
            np.int32(-7),
            np.int32(2**31 - 1),
            special,
            nan_payload,
            np.float32(1e-45),
            np.array([True, False, True]),
            np.array([[1.5, -2.5], [3.5, 4.5]], dtype=np.float32),
        )
        layout = words_layout(*values)
        words = jax.jit(lambda *v: pack_words(*v))(*values)
    assert words.dtype == jnp.uint32 and words.ndim == 1
    assert words.size == 1 + 1 + 12 + 2 + 1 + 3 + 4
    for want, got in zip(values, unpack_words(np.asarray(words), layout), strict=True):
        want = np.asarray(want)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()
