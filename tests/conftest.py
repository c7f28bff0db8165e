"""Test-session set-up.

Four simulated CPU devices (``--xla_force_host_platform_device_count=4``) so that the
multi-device fits (``devices=``) are tested on any machine; fits that do not ask for
devices still run on the first one.  Set before JAX is first imported.
"""

import os

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=4").strip()


import pytest  # noqa: E402  (after the XLA flag above)


@pytest.fixture
def recorded_pool(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """A fresh 256 MiB host buffer pool in place of the process one, recording the
    address of every buffer it hands out: append a list before each fit, and the
    addresses of that fit's buffers are added to it."""
    from curvax.core import host_buffers
    from curvax.core.host_buffers import BufferPool, _address

    pool = BufferPool(256 * 2**20)
    monkeypatch.setattr(host_buffers, "POOL", pool)
    handed: list[list[int]] = []
    take = pool.empty

    def recording(shape, dtype):  # type: ignore[no-untyped-def]
        out = take(shape, dtype)
        handed[-1].append(_address(out))
        return out

    monkeypatch.setattr(pool, "empty", recording)
    return handed


@pytest.fixture
def float64_only():
    """float64 inside the test only: the process-wide setting is left as it was.  A
    module whose every test needs it says ``pytestmark =
    pytest.mark.usefixtures("float64_only")``.  (JAX is imported here, not above: the
    XLA flag must be set first.)"""
    import jax

    with jax.enable_x64(True):
        yield
