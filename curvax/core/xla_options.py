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

The same programs also ask for 512-bit vectors, ``xla_cpu_prefer_vector_width=512``
(XLA:CPU's default prefers 256 bits even where the processor has AVX-512).  The
element-wise part of a pass over the data — the model, its Jacobian rows and the masking
— then runs 4–10 % faster on the AVX-512 CI-class VM (AMD EPYC, jaxlib 0.10.2), with
bit-identical results in that measurement.  On an EPYC of family 26 (Zen 5, a later
VM of the same class) some values round differently: the NIST Lanczos1 fit, whose Σr²
lies at the float64 floor, takes 81 evaluations instead of 80 and its Σr² moves in the
third digit (``tests/test_nist.py``).  Whole warm fits, 256 → 512 bits, fastest of
eight, two runs each (``benchmarks/README.md``, session 20)::

    model       10⁵ points               10⁶ points
    exp         3.55/3.83 → 3.47/3.37 ms  24.2/23.5 → 22.6/22.5 ms
    gauss       5.12/5.08 → 4.65/4.69 ms  35.4/31.8 → 29.9/30.3 ms
    logistic4   11.2/11.2 → 10.2/10.5 ms  60.8/59.1 → 57.7/55.2 ms
    peaks3      17.3/17.1 → 16.1/16.2 ms  81.1/81.2 → 78.0/76.6 ms

A processor without AVX-512 ignores the preference (XLA never exceeds the ISA's width).
Compilation time and small fits (10² points) are unchanged.

Third, they switch off XLA:CPU's ``cpu-parallel-task-assigner`` pass
(``xla_disable_hlo_passes``), which splits a fused kernel it deems expensive into parts
run on XLA's own worker threads.  A fit's kernels work on one block of 4096 points at a
time, where the hand-off costs about what the split saves, and in a threaded fit
(:mod:`curvax.core.threaded`) those workers compete with the two part programs for the
two cores.  Measured on the 2-core CI-class VM (medians of 40 fits, two alternated
processes each): no change for the exponential, Gaussian and three-peak models at 10⁵
and 10⁶ points; the 4PL with its logarithm held in memory
(:mod:`curvax.core.fast_log`), 10⁶ points on two threads, 29.6–30.5 → 23.2–24.8 ms
(``benchmarks/README.md``, session 24).  :func:`kernels_stay_whole` says whether this
applies.

:func:`cpu_compiler_options` gives these options to the programs curvax compiles when the
default back end is the CPU (per program, through ``jax.jit(...,
compiler_options=...)``: JAX's process-wide configuration is not touched) and this
jaxlib accepts them: known for jaxlib 0.10 (:data:`VERIFIED_JAXLIB`), probed once for
other versions by compiling a one-operation program (20-40 ms of a first fit).  The
environment variable ``CURVAX_XLA_CPU_FUSION_EMITTERS=1`` (read once) keeps XLA's
defaults for all three options.

The programs of a single fit (:mod:`curvax.core.engine`, :mod:`curvax.scale`) take the
options; batch programs (:mod:`curvax.batch`) do not.  A batch split over devices must
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
CPU_OPTIONS: dict[str, Any] = {
    "xla_cpu_use_fusion_emitters": False,
    "xla_cpu_prefer_vector_width": 512,
    "xla_disable_hlo_passes": "cpu-parallel-task-assigner",
}
#: jaxlib (major, minor) versions known to accept :data:`CPU_OPTIONS` (not probed).
VERIFIED_JAXLIB = ((0, 10),)


def kernels_stay_whole() -> bool:
    """Whether the programs curvax compiles keep each fused kernel on one thread (the
    options apply, ``cpu-parallel-task-assigner`` among them; module docstring)."""
    return cpu_compiler_options() is not None


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
