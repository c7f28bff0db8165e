"""Per-iteration host hooks: user callbacks and the wall-clock limit.

The solver loop is compiled; to let Python code see (and stop) it, a fit with
callbacks or a ``timeout`` compiles one ``jax.experimental.io_callback`` into the
loop body.  Fits without them compile no callback at all (no overhead).

The compiled program cannot hold a reference to a particular Python callback
object (it would have to be recompiled for every fit), so it calls the fixed
function :func:`_dispatch` with an integer *token* (packed with the iteration's values
into one operand, :func:`curvax.core.wire.pack_words`: JAX puts every operand of a
callback on a device first, and nine of them made a monitored 100-point fit take
2.4–2.6 ms instead of 1.2–1.3 ms); :class:`Monitor` registers itself
under a fresh token for exactly the duration of one fit (``with monitor:``) and is
removed afterwards.  The registry is private, guarded by a lock, and empty whenever
no monitored fit is running.

What the loop reports each trial step is an :class:`IterationState`.  The monitor
answers 0 (continue), 1 (a callback asked to stop: status -2) or 2 (the time limit
passed: status -3).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from curvax.core.wire import Layout, TokenRegistry, pack_words, unpack_words, words_layout

CONTINUE, STOP_CALLBACK, STOP_TIMEOUT = 0, 1, 2

_REGISTRY = TokenRegistry()


@dataclass(frozen=True)
class IterationState:
    """What a callback sees after each trial step of the solver.

    Attributes
    ----------
    iteration : int
        Accepted steps so far.
    nfev : int
        Evaluations so far.
    cost : float
        Current cost ``½ Σ ρ``.
    params : ndarray
        Current parameters (free parameters only when some are fixed).
    grad_norm : float
        Max-norm of the gradient.
    step_norm : float
        Norm of the last trial step.
    trust_radius : float
        Current trust-region radius Δ.
    accepted : bool
        Whether the last trial step was accepted.
    """

    iteration: int
    nfev: int
    cost: float
    params: np.ndarray
    grad_norm: float
    step_norm: float
    trust_radius: float
    accepted: bool


class Monitor:
    """Calls ``callbacks`` each iteration and enforces ``timeout`` (seconds)."""

    def __init__(self, callbacks: Sequence[Any] = (), timeout: float | None = None) -> None:
        if timeout is not None:
            try:
                timeout = float(timeout)
            except (TypeError, ValueError) as err:
                raise ValueError(f"timeout: expected seconds as a number, got {timeout!r}") from err
            if not timeout > 0:
                raise ValueError(f"timeout: expected a positive number of seconds, got {timeout}")
        for cb in callbacks:
            if not (callable(cb) or hasattr(cb, "on_iteration")):
                raise TypeError(
                    "callbacks: each callback must be callable or have an on_iteration "
                    f"method, got {type(cb).__name__}"
                )
        self.callbacks = list(callbacks)
        self.timeout = timeout
        self.token = _REGISTRY.new_token()
        self.t0 = 0.0
        self.error: BaseException | None = None

    def __enter__(self) -> Monitor:
        self.t0 = time.monotonic()
        _REGISTRY.add(self.token, self)
        for cb in self.callbacks:
            start = getattr(cb, "on_start", None)
            if start is not None:
                start()
        return self

    def __exit__(self, *exc: object) -> None:
        _REGISTRY.remove(self.token)

    def step(self, state: IterationState) -> int:
        if self.error is not None:
            return STOP_CALLBACK
        try:
            for cb in self.callbacks:
                fn = getattr(cb, "on_iteration", cb)
                if fn(state, state.iteration):
                    return STOP_CALLBACK
        except BaseException as err:  # re-raised by the caller after the loop
            self.error = err
            return STOP_CALLBACK
        if self.timeout is not None and time.monotonic() - self.t0 > self.timeout:
            return STOP_TIMEOUT
        return CONTINUE

    def complete(self, result: Any) -> None:
        if self.error is not None:
            raise self.error
        for cb in self.callbacks:
            done = getattr(cb, "on_complete", None)
            if done is not None:
                done(result)


def _dispatch(words: Any, *, layout: Layout) -> np.ndarray:
    token, nit, nfev, cost, x, gnorm, snorm, delta, accepted = unpack_words(words, layout)
    mon = _REGISTRY.get(token)
    if mon is None:
        return np.int32(CONTINUE)
    state = IterationState(
        iteration=int(nit),
        nfev=int(nfev),
        cost=float(cost),
        params=np.array(x),
        grad_norm=float(gnorm),
        step_norm=float(snorm),
        trust_radius=float(delta),
        accepted=bool(accepted),
    )
    return np.int32(mon.step(state))


def make_hook(token: jax.Array) -> Callable[..., jax.Array]:
    """The in-loop hook: ``hook(nit, nfev, cost, x, gnorm, snorm, Δ, accepted) -> code``."""

    def hook(nit, nfev, cost, x, gnorm, snorm, delta, accepted):
        values = (token, nit, nfev, cost, x, gnorm, snorm, delta, accepted)
        return io_callback(
            functools.partial(_dispatch, layout=words_layout(*values)),
            jax.ShapeDtypeStruct((), jnp.int32),
            pack_words(*values),  # one operand; float64 as bits (curvax.core.wire)
            ordered=True,
        )

    return hook


def apply_code(status: jax.Array, code: jax.Array, running: int) -> jax.Array:
    """Turn a hook answer into a solver status (only while the loop is still running)."""
    status = jnp.where((status == running) & (code == STOP_CALLBACK), -2, status)
    return jnp.where((status == running) & (code == STOP_TIMEOUT), -3, status)
