"""Fixtures for the chart tests: renders of charts/ipamd through Helm's engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helmrender import CHART_DIR, NAMESPACE, RELEASE, Rendered, helm


@pytest.fixture(scope="session")
def chart() -> Any:
    if helm is None:
        pytest.skip("helm-python-sdk (the test extra) is not installed")
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart: Any) -> Callable[..., Rendered]:
    def _render(values: dict[str, Any] | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
        return Rendered(chart.render(values or {}, name=name, namespace=namespace, is_install=True))

    return _render


@pytest.fixture(scope="session")
def render_error(chart: Any) -> Callable[[dict[str, Any]], str]:
    """Renders values that must fail; returns the error text."""

    def _render_error(values: dict[str, Any]) -> str:
        with pytest.raises(helm.HelmError) as caught:
            chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return str(caught.value)

    return _render_error
