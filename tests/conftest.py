import os

import pytest

# Generated datasets are cached per test session, never in the user's home directory.
os.environ.setdefault("NORMBENCH_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "normbench"))


@pytest.fixture
def tiny_overrides():
    """A few steps of training: enough to exercise the loop, quick on 2 cores."""
    return ["trainer.max_steps=20", "trainer.eval_every=10", "trainer.progress=none"]
