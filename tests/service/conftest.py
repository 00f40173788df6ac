"""The service on each database (tests/support/inprocess.py): ``ipam`` alone, or ``rest``
for the REST API in front of it."""

from tests.support.inprocess import ipam as ipam
from tests.support.inprocess import rest as rest
