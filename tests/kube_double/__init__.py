"""An in-process Kubernetes API server double for ipamd's tests.

``KubeApiDouble`` serves the subset of the Kubernetes API that ipamd uses
(pods, events, statefulsets, leases, namespaces, discovery) over real HTTP
on 127.0.0.1, so the production client code (kubernetes_asyncio) and kubectl
can talk to it unchanged.  See docs/design/kube-double.md.
"""

from .clock import TestClock
from .errors import ApiError
from .handlers import RecordedRequest
from .server import KubeApiDouble, ThreadedKubeApi

__all__ = [
    "ApiError",
    "KubeApiDouble",
    "RecordedRequest",
    "TestClock",
    "ThreadedKubeApi",
]
