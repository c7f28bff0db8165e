"""Python's cyclic garbage collector, paused while a fit program is dispatched.

The first call of a fit program traces it (JAX runs the solver's Python to build a
jaxpr), lowers it to MLIR and compiles it.  Tracing and lowering allocate hundreds of
thousands of short-lived objects, and Python's collector answers with full collections,
each of which walks every object of the process — several hundred thousand once JAX is
imported.  A first fit met two of them, about a third of its tracing time (exponential,
100 points, 2-core CI-class VM: tracing 0.14–0.21 s with the collector running,
0.09–0.13 s with it paused; four alternating pairs of fresh processes).

:func:`gc_paused` switches the collector off around a program's dispatch (on a warm call
that is only the hand-over of the arguments, microseconds) and back on afterwards.
Reference counting frees almost all memory as usual meanwhile; cycles left by that
window are collected by the next collection after it.  When several threads dispatch
fits at once, the first to enter switches the collector off and the last to leave
switches it back on; a collector that was already off when the first entered stays off.
A child process forked while a fit was being dispatched starts with the collector as
the parent had it before that fit.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator

from curvax.core.locks import ForkSafeLock

_LOCK = ForkSafeLock()
_state = {"inside": 0, "restore": False}  # threads inside; switch back on at the end


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off (module docstring)."""
    with _LOCK:
        if _state["inside"] == 0:
            _state["restore"] = gc.isenabled()
            gc.disable()
        _state["inside"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _state["inside"] -= 1
            if _state["inside"] == 0 and _state["restore"]:
                gc.enable()


def _after_fork_in_child() -> None:
    """Only the forking thread lives on in the child: no dispatch is under way there."""
    if _state["inside"] and _state["restore"]:
        gc.enable()
    _state["inside"] = 0


os.register_at_fork(after_in_child=_after_fork_in_child)
