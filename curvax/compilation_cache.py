"""Opt-in persistent compilation cache, so a new process skips compiling.

JAX can store compiled programs on disk and reuse them in later processes.  curvax
leaves this off (it writes files and changes JAX's process-wide configuration); turn
it on with :func:`enable_persistent_cache` or, before importing curvax, with the
environment variable ``CURVAX_COMPILATION_CACHE_DIR=/path/to/dir`` (read once, at
import).
"""

from __future__ import annotations

import os

import jax

ENV_VAR = "CURVAX_COMPILATION_CACHE_DIR"


def enable_persistent_cache(path: str | None = None, min_compile_time_secs: float = 0.0) -> str:
    """Store compiled fit programs in ``path`` (default ``~/.cache/curvax/jax``).

    This sets JAX's process-wide ``jax_compilation_cache_dir``; programs that took at
    least ``min_compile_time_secs`` to compile are written there and reused by later
    processes with the same JAX version and machine.  Returns the directory used.
    """
    path = os.path.expanduser(path or os.path.join("~", ".cache", "curvax", "jax"))
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def persistent_cache_enabled() -> bool:
    """Whether JAX writes compiled programs to a persistent cache in this process.

    Programs with host callbacks are never written there (JAX cannot serialise the
    callback), so defaults that would add one — the threaded reduction of
    :mod:`curvax.core.threaded` — are not taken while the cache is on.
    """
    return bool(jax.config.jax_compilation_cache_dir)


def _enable_from_environment() -> None:
    path = os.environ.get(ENV_VAR)
    if path:
        enable_persistent_cache(path)
