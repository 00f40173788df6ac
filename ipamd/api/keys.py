"""Typed application keys shared by the handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ipamd.api.auth import TokenTable
    from ipamd.errors import IpamError
    from ipamd.policy import AttachmentPolicy
    from ipamd.service import Ipam

IPAM: web.AppKey[Ipam] = web.AppKey("ipam")
POLICY: web.AppKey[AttachmentPolicy] = web.AppKey("policy")
TOKENS: web.AppKey[TokenTable | None] = web.AppKey("tokens")
# The CNI plugin's endpoint (/v1/cni/exec) answers failures inside a 200; it leaves the verb
# and the error (or None) here for the metrics middleware (ipamd.api.metrics).
CNI_OUTCOME: web.RequestKey[tuple[str, IpamError | None]] = web.RequestKey("cni_outcome")
