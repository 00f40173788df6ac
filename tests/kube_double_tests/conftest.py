"""Fixtures for the kube double's own tests.

The repository root is put on ``sys.path`` so ``tests.kube_double`` imports
the same way from any test directory, whatever pytest's rootdir handling.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.kube_double import KubeApiDouble, ThreadedKubeApi  # noqa: E402
from tests.kube_double.kubectl import KUBECTL, Kubectl  # noqa: E402

@pytest.fixture
async def kube_api() -> AsyncIterator[KubeApiDouble]:
    """A double on the test's own event loop."""
    async with KubeApiDouble() as api:
        yield api


@pytest.fixture
def kube_thread() -> Iterator[ThreadedKubeApi]:
    """A double serving from a background thread (for kubectl and sync code)."""
    handle = KubeApiDouble.start_in_thread()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def kubectl(kube_thread: ThreadedKubeApi, tmp_path: Path) -> Kubectl:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    kubeconfig = kube_thread.write_kubeconfig(tmp_path / "kubeconfig")
    return Kubectl(kubeconfig, tmp_path / "kube-cache")

