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
from tests.kube_double.kubectl import KUBECTL, Kubectl, client_version  # noqa: E402

DEFAULT_SERVER_VERSION = (1, 30)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run kubectl tests against several kubectl releases where possible.

    With Google's dispatching kubectl, the server version the double reports
    selects the kubectl release that runs, so the kubectl tests are repeated
    for an old, a middle and a recent one.
    """
    if "kubectl" not in metafunc.fixturenames or KUBECTL is None:
        return
    versions = [DEFAULT_SERVER_VERSION]
    if client_version()[2]:
        versions = [(1, 27), (1, 30), (1, 33)]
    metafunc.parametrize("server_version", versions, ids=[f"k8s-{a}.{b}" for a, b in versions])


@pytest.fixture
def server_version() -> tuple[int, int]:
    return DEFAULT_SERVER_VERSION


@pytest.fixture
async def kube_api() -> AsyncIterator[KubeApiDouble]:
    """A double on the test's own event loop."""
    async with KubeApiDouble() as api:
        yield api


@pytest.fixture
def kube_thread(server_version: tuple[int, int]) -> Iterator[ThreadedKubeApi]:
    """A double serving from a background thread (for kubectl and sync code)."""
    handle = KubeApiDouble.start_in_thread(server_version=server_version)
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
