"""Test setup: two host devices (multi-device code paths run on CPU), shared fixtures."""

import os
import pathlib

# Must happen before jax is imported anywhere: tests run on two CPU devices so that the
# data-parallel paths (sharded batches, cross-device BatchNorm) are exercised.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_data():
    """`../shared/data` beside the repo, or skip: a user's machine will not have it."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"real photographs not available: {path} is absent")
    return path


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory, monkeypatch):
    """Prepared datasets go to a per-session temp dir, never to the user's cache."""
    monkeypatch.setenv("COLORJAX_DATA_DIR", str(tmp_path_factory.getbasetemp() / "tfds"))
