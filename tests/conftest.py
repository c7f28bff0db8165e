"""Test-session set-up.

Four simulated CPU devices (``--xla_force_host_platform_device_count=4``) so that the
multi-device fits (``devices=``) are tested on any machine; fits that do not ask for
devices still run on the first one.  Set before JAX is first imported.
"""

import os

_FLAG = "--xla_force_host_platform_device_count"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + f" {_FLAG}=4").strip()
