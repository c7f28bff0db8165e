"""Compiler options for the programs curvax compiles on XLA:CPU.

XLA:CPU has two code generators for fused element-wise kernels: the MLIR-based
*fusion emitters* (its default) and the older elemental IR emitter.  A fit program
holds over a hundred small fused kernels — the trust-region algebra on p-sized arrays,
beside the pass over the data — and the fusion emitters take a few milliseconds to
compile each of them.  With ``xla_cpu_use_fusion_emitters=False`` a new fit program
compiles in about half the time and runs as fast.  Measured on the 2-core CI-class VM
(jaxlib 0.10.2), exponential model, one process per row::

    N      compilation of the fit (default → option)   warm fit (default → option)
    10²    0.81 → 0.44 s                                0.63 → 0.60 ms
    10⁴    0.97 → 0.65 s                                1.24 → 1.19 ms
    10⁶    1.12 → 0.68 s                                31.0 → 31.1 ms
    10⁷    1.05 → 0.67 s                                263 → 271 ms

:func:`cpu_compiler_options` gives the option to the programs curvax compiles when the
default back end is the CPU (per program, through ``jax.jit(...,
compiler_options=...)``: JAX's process-wide configuration is not touched) and this
jaxlib accepts it: known for jaxlib 0.10 (:data:`VERIFIED_JAXLIB`), probed once for
other versions by compiling a one-operation program (20-40 ms of a first fit).  The environment
variable ``CURVAX_XLA_CPU_FUSION_EMITTERS=1`` (read once) keeps XLA's default.

The programs of a single fit (:mod:`curvax.core.engine`, :mod:`curvax.scale`) take the
option; batch programs (:mod:`curvax.batch`) do not.  A batch split over devices must
give the bits of the one-device run (``docs/multi_device.md``), and with the elemental
emitter the per-device program, compiled for fewer fits per call, rounded one value of
111 differently (by one unit in the last place; ``tests/test_devices.py``).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jaxlib.version
import numpy as np

ENV_VAR = "CURVAX_XLA_CPU_FUSION_EMITTERS"

#: What curvax asks of XLA:CPU (see the module docstring).
CPU_OPTIONS: dict[str, Any] = {"xla_cpu_use_fusion_emitters": False}
#: jaxlib (major, minor) versions known to accept :data:`CPU_OPTIONS` (not probed).
VERIFIED_JAXLIB = ((0, 10),)


@functools.cache
def cpu_compiler_options() -> dict[str, Any] | None:
    """:data:`CPU_OPTIONS` when they apply (module docstring), else None (XLA's defaults)."""
    if os.environ.get(ENV_VAR, "").strip() not in ("", "0"):
        return None
    if jax.default_backend() != "cpu":
        return None
    if tuple(getattr(jaxlib.version, "__version_info__", ())[:2]) in VERIFIED_JAXLIB:
        return dict(CPU_OPTIONS)
    try:
        jax.jit(lambda v: v + 1, compiler_options=CPU_OPTIONS).lower(np.float32(0)).compile()
    except jax.errors.JaxRuntimeError:  # "No such compile option": an XLA without it
        return None
    return dict(CPU_OPTIONS)
