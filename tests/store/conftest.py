"""The service and an in-process daemon on each database (tests/support/inprocess.py), for
storage tests that call the service or go through the REST API."""

from tests.support.inprocess import ipam as ipam
from tests.support.inprocess import rest as rest
