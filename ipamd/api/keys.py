"""Typed application keys shared by the handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ipamd.api.auth import TokenTable
    from ipamd.policy import AttachmentPolicy
    from ipamd.service import Ipam

IPAM: web.AppKey[Ipam] = web.AppKey("ipam")
POLICY: web.AppKey[AttachmentPolicy] = web.AppKey("policy")
TOKENS: web.AppKey[TokenTable | None] = web.AppKey("tokens")
