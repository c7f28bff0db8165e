"""Memory planning: how much a fit needs, and which strategy and chunk size to use.

With ``N`` points, ``k`` independent variables, ``p`` parameters, ``b`` bytes per
number (8 for float64) and a chunk of ``c`` points computed in inner blocks of
``B = min(block_size, c)`` points, the components are

* data                 ``N (k + 1 + s) b``       (s = 1 with sigma);
* chunk buffers        ``3 c (k + 3) b``         (the chunk being computed, the one
  being prefetched, and the padded device copy with weights and mask);
* Jacobian blocks      ``4 B (p + 1) b``         (tangents, rows ``[J̃ | r̃]``, QR work);
* solver state         ``64 (p + 1)² b``         (factors, SVDs of the subproblem).

*In memory* the whole data set is on the device: ``data + Jacobian blocks + state``.
*Chunked*, only the chunk terms count; the chunk size is the largest ``c`` in
``[min_chunk_size, max_chunk_size]`` whose working memory fits
``safety_factor × budget``.  The recommended strategy is ``'in_memory'`` when that
fits the budget, else ``'chunked'`` when the data fit in host memory (arrays the
caller holds), else ``'streaming'`` (read from storage chunk by chunk; the same
exact fit, with the data never held whole).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

GIB = 1024.0**3


def available_memory_bytes() -> tuple[int, str]:
    """Free memory of the default device (accelerator statistics, else host RAM)."""
    dev = jax.devices()[0]
    try:
        stats = dev.memory_stats()
    except Exception:
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), str(dev.platform)
    try:
        import psutil

        return int(psutil.virtual_memory().available), "cpu"
    except ImportError:  # pragma: no cover - psutil is optional
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")), "cpu"
        except (ValueError, OSError, AttributeError):
            return 4 * 1024**3, "cpu"


def _chunk_bytes(c: int, k: int, p: int, b: int, block: int) -> int:
    blk = min(block, c)
    return 3 * c * (k + 3) * b + 4 * blk * (p + 1) * b


def estimate_memory_requirements(
    n_points: int,
    n_params: int,
    dtype: Any = "float64",
    *,
    n_x: int = 1,
    has_sigma: bool = False,
    memory_limit_gb: float | None = None,
    min_chunk_size: int = 1024,
    max_chunk_size: int = 1_048_576,
    block_size: int = 4096,
    safety_factor: float = 0.8,
    data_in_memory: bool = True,
) -> dict[str, Any]:
    """Memory needed by a fit and the strategy and chunk size that fit the budget.

    Parameters
    ----------
    n_points, n_params : int
        Data points N and fitted parameters p.
    dtype : {'float64', 'float32'}
    n_x : int
        Number of independent variables k.
    has_sigma : bool
        Whether per-point uncertainties are stored.
    memory_limit_gb : float, optional
        Budget in GiB (default: the free memory of the default device).
    min_chunk_size, max_chunk_size, block_size, safety_factor
        See the module docstring.
    data_in_memory : bool
        Whether the caller already holds the data in host memory (arrays); if not
        (a file or database), the chunked strategy is reported as ``'streaming'``.

    Returns
    -------
    dict
        ``data_gb``, ``jacobian_chunk_gb``, ``chunk_buffers_gb``, ``solver_state_gb``,
        ``in_memory_gb`` (whole data on the device), ``chunked_gb`` (at the chosen
        chunk size), ``total_gb`` (of the recommended strategy), ``available_gb``,
        ``budget_gb``, ``strategy`` ('in_memory' | 'chunked' | 'streaming'),
        ``chunk_size``, ``n_chunks``, ``device``.

    Raises
    ------
    ValueError
        Bad arguments, or a budget too small for one chunk of ``min_chunk_size``.
    """
    for name, v in (("n_points", n_points), ("n_params", n_params), ("n_x", n_x)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"dtype: expected 'float64' or 'float32', got {dtype!r}") from err
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype: expected 'float64' or 'float32', got {dt.name}")
    if min_chunk_size < 1 or max_chunk_size < min_chunk_size:
        raise ValueError(
            f"min_chunk_size/max_chunk_size: need 1 <= min <= max, got {min_chunk_size}, "
            f"{max_chunk_size}"
        )
    avail, device = available_memory_bytes()
    if memory_limit_gb is None:
        budget = float(avail)
    else:
        if not isinstance(memory_limit_gb, (int, float)) or not memory_limit_gb > 0:
            raise ValueError(
                f"memory_limit_gb: expected a positive number, got {memory_limit_gb!r}"
            )
        budget = float(memory_limit_gb) * GIB
    b = dt.itemsize
    n, p, k = int(n_points), int(n_params), int(n_x)
    data = n * (k + 1 + int(has_sigma)) * b
    state = 64 * (p + 1) ** 2 * b
    jac_in_mem = 4 * min(block_size, n) * (p + 1) * b
    in_memory = data + jac_in_mem + state
    usable = safety_factor * budget - state
    c_hi = min(max_chunk_size, n) if n >= min_chunk_size else n
    c_lo = min(min_chunk_size, n)
    if _chunk_bytes(c_lo, k, p, b, block_size) > usable:
        need = (_chunk_bytes(c_lo, k, p, b, block_size) + state) / safety_factor / GIB
        raise ValueError(
            f"memory_limit_gb: a budget of {budget / GIB:.4g} GiB is too small for even one "
            f"chunk of min_chunk_size={c_lo} points (needs about {need:.4g} GiB)"
        )
    lo, hi = c_lo, c_hi
    while lo < hi:  # largest chunk that fits
        mid = (lo + hi + 1) // 2
        if _chunk_bytes(mid, k, p, b, block_size) <= usable:
            lo = mid
        else:
            hi = mid - 1
    chunk = lo
    if chunk >= 4096:
        chunk -= chunk % 1024
    chunked = _chunk_bytes(chunk, k, p, b, block_size) + state
    if in_memory <= safety_factor * budget:
        strategy = "in_memory"
        total = in_memory
        chunk = n
    else:
        strategy = "chunked" if data_in_memory else "streaming"
        total = chunked
    n_chunks = -(-n // chunk)
    return {
        "n_points": n,
        "n_params": p,
        "dtype": dt.name,
        "data_gb": data / GIB,
        "jacobian_chunk_gb": 4 * min(block_size, chunk) * (p + 1) * b / GIB,
        "chunk_buffers_gb": 3 * chunk * (k + 3) * b / GIB if strategy != "in_memory" else 0.0,
        "solver_state_gb": state / GIB,
        "in_memory_gb": in_memory / GIB,
        "chunked_gb": chunked / GIB,
        "total_gb": total / GIB,
        "available_gb": avail / GIB,
        "budget_gb": budget / GIB,
        "strategy": strategy,
        "chunk_size": int(chunk),
        "n_chunks": int(n_chunks),
        "device": device,
    }
