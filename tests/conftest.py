import os

import pytest

# Tests run on every core (pytest-xdist workers): each worker trains on one thread, so that the
# workers do not oversubscribe the cores (23x slower on a loaded 2-core machine; docs/performance.md).
# Set before torch is imported; the tests of trainer.threads set and clear it themselves.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

# Generated datasets are cached per test session, never in the user's home directory.
os.environ.setdefault("NORMBENCH_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "normbench"))
# The run cache is off (tests train what they ask for); the tests of the cache turn it on for themselves.
os.environ["NORMBENCH_RUN_INDEX"] = "none"


@pytest.fixture
def tiny_overrides():
    """A few steps of training: enough to exercise the loop, quick on 2 cores."""
    return ["trainer.max_steps=20", "trainer.eval_every=10", "trainer.progress=none"]

