"""Fixtures of the cluster and fault tests: short socket directories and JSON getters."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.clusterkit import socket_dir


@pytest.fixture
def sockdir() -> Iterator[Path]:
    with socket_dir() as path:
        yield path


@pytest.fixture(scope="session", autouse=True)
def many_files() -> None:
    """Raises the soft open-file limit: 2000 idle connections and 4 daemons need it.

    Daemons inherit the limit from this process.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 16384) if hard != resource.RLIM_INFINITY else 16384
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
