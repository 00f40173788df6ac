"""How attachments relate to the world outside the database.

Standalone, an ADD is taken as it comes and DEL releases. In Kubernetes mode
(``ipamd.k8s``) a policy reads pod annotations into the request, writes results back,
and keeps addresses across sandbox restarts. The CNI handlers only talk to this interface.
"""

from __future__ import annotations

from typing import Protocol

from ipamd.core import model
from ipamd.errors import IpamError
from ipamd.service import AddRequest


class AttachmentPolicy(Protocol):
    async def prepare(self, request: AddRequest) -> AddRequest:
        """Returns the request completed with what the pod asks for (annotations)."""

    async def confirm_takeover(self, request: AddRequest, held_uid: str) -> AddRequest:
        """The attachment is held for pod UID ``held_uid``: returns the request allowed to take
        it over (``replaces_uid``) once the orchestrator confirms its pod replaced the holder;
        raises when it does not."""

    async def owner_of(self, request: AddRequest) -> AddRequest:
        """Returns the request with the owner its addresses are held for (a VM's, for its launcher pod)."""

    async def read_labels(self, request: AddRequest, kinds: frozenset[str]) -> AddRequest:
        """Returns the request with the labels of ``kinds`` a placement rule needs (LabelsNeeded)."""

    async def committed(self, request: AddRequest, allocation: model.Allocation) -> None:
        """Called after an allocation committed; must not undo it on failure."""

    async def failed(self, request: AddRequest, error: IpamError) -> None:
        """Called when an ADD is refused, to tell the pod's owner (Events)."""

    async def release_on_del(self, request: AddRequest) -> bool:
        """Returns True when a CNI DEL should release the attachment's addresses."""

    def ready(self) -> tuple[bool, str]:
        """Returns whether ADDs can succeed as far as the world outside the database goes."""

    async def may_allocate(self) -> None:
        """Raises when this daemon must not allocate at all (REST allocations)."""


class StandalonePolicy:
    """No orchestrator: requests are complete as they come, DEL releases."""

    async def prepare(self, request: AddRequest) -> AddRequest:
        return request

    async def committed(self, request: AddRequest, allocation: model.Allocation) -> None:
        return None

    async def failed(self, request: AddRequest, error: IpamError) -> None:
        return None

    async def confirm_takeover(self, request: AddRequest, held_uid: str) -> AddRequest:
        # Never asked: only Kubernetes requests carry check_uid.
        return request

    async def release_on_del(self, request: AddRequest) -> bool:
        return True

    async def owner_of(self, request: AddRequest) -> AddRequest:
        return request

    async def read_labels(self, request: AddRequest, kinds: frozenset[str]) -> AddRequest:
        # Never asked: standalone requests leave no labels to read on demand.
        return request

    def ready(self) -> tuple[bool, str]:
        return True, "ready"

    async def may_allocate(self) -> None:
        return None
