from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "ci" keeps ./scripts/test fast; "long" is for fuzzing by hand:
#   HYPOTHESIS_PROFILE=long ./scripts/test
# "quick" is the pure-Python rerun's (tests/integration/test_pure_python.py): the
# same properties on the same sources, fewer examples than the compiled run's.
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "quick", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=20000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
