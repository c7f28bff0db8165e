"""Hypothesis profiles shared by the property suites (test_invariants, test_adversarial).

``CURVAX_FUZZ`` unset (CI): ``curvax-ci``, derandomised — the same fixed examples on
every run, 25 per property unless a test scales it.  ``CURVAX_FUZZ=long`` (local
runs): ``curvax-long``, random seeds and 400 examples per property.  No deadline:
the first example of a property compiles its fit program.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG = os.environ.get("CURVAX_FUZZ", "") == "long"
settings.register_profile(
    "curvax-ci", max_examples=25, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "curvax-long", max_examples=400, derandomize=False, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = "curvax-long" if LONG else "curvax-ci"


def fuzz_settings(scale: float = 1.0) -> settings:
    """The active profile, with ``scale`` times its number of examples (at least 1)."""
    base = settings.get_profile(PROFILE)
    return settings(base, max_examples=max(1, round(base.max_examples * scale)))
