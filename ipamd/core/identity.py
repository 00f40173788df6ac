"""The rules for the names that identify an attachment, checked once at the edge.

Every door a new attachment comes through (REST ``/v1/allocations``, the CNI plugin's
``/v1/cni/exec`` and the structured ``/v1/cni/*`` routes) calls these, so a name that the
kubelet or the kernel would never produce is refused before it is stored or logged:

- namespace: a DNS-1123 label (lowercase letters, digits, '-'), at most 63 characters;
  so is a cluster's name (``--cluster-name``, ``clusterName``), which goes into metric
  labels, columns and URLs as a namespace does;
- pod and node: a DNS-1123 subdomain (labels joined by '.'), at most 253 characters;
- interface: the Linux and CNI SPEC rules: 1 to 15 bytes, not '.' or '..', no '/', ':'
  or whitespace;
- container id and network name: the CNI SPEC rule, an alphanumeric character then
  alphanumerics, '_', '.' or '-';
- anything else (provider, pod UID, netns path): bounded, without control characters.

A control character is named as such whatever else is wrong, since it is what an attacker
forging log lines sends. Rows written before these rules existed are never checked again:
they read back, and release, as they are. Pure: no I/O.
"""

from __future__ import annotations

import re
import unicodedata

from ipamd.errors import InvalidInput

NAMESPACE_MAX = 63
POD_MAX = 253
INTERFACE_MAX_BYTES = 15
CONTAINER_ID_MAX = 253
NETWORK_MAX = 253
POD_UID_MAX = 64
NETNS_MAX = 1024

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_LABEL = re.compile(_LABEL)
_DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# CNI SPEC, "Parameters" (container ID) and "Configuration format" (network name).
_CNI_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Shown values are cut: the message must stay readable when the value is 100 kB.
_SHOWN_MAX = 80


def namespace(value: object, *, field: str) -> str:
    """Returns ``value`` when it is a Kubernetes namespace name."""
    return _matching(value, _DNS_LABEL, NAMESPACE_MAX, field=field, what=_LABEL_RULE)


def cluster_name(value: object, *, field: str = "cluster-name") -> str:
    """Returns ``value`` when it may name a cluster: a DNS-1123 label, as a namespace is."""
    return _matching(
        value,
        _DNS_LABEL,
        NAMESPACE_MAX,
        field=field,
        what=f"a valid cluster name: expected a DNS label ({_LABEL_CHARACTERS}), such as 'prod-east'",
    )


def pod(value: object, *, field: str) -> str:
    """Returns ``value`` when it is a Kubernetes pod name."""
    return _matching(value, _DNS_SUBDOMAIN, POD_MAX, field=field, what=_SUBDOMAIN_RULE)


def node(value: object, *, field: str) -> str:
    """Returns ``value`` when it is a Kubernetes node name."""
    return _matching(value, _DNS_SUBDOMAIN, POD_MAX, field=field, what=_SUBDOMAIN_RULE)


def container_id(value: object, *, field: str) -> str:
    """Returns ``value`` when it is a container id as the CNI SPEC defines it."""
    return _matching(value, _CNI_NAME, CONTAINER_ID_MAX, field=field, what=_CNI_NAME_RULE)


def network_name(value: object, *, field: str) -> str:
    """Returns ``value`` when it is a network name as the CNI SPEC defines it."""
    return _matching(value, _CNI_NAME, NETWORK_MAX, field=field, what=_CNI_NAME_RULE)


def interface(value: object, *, field: str) -> str:
    """Returns ``value`` when the kernel (and the CNI SPEC) accept it as an interface name."""
    text = _text(value, field=field)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > INTERFACE_MAX_BYTES:
        raise InvalidInput(
            f"{_shown(text)} is {size} bytes long; an interface name has at most {INTERFACE_MAX_BYTES}", field=field
        )
    if text in (".", "..") or any(c in "/:" or c.isspace() for c in text):
        raise InvalidInput(
            f"{_shown(text)} is not an interface name: not '.' or '..', and no '/', ':' or whitespace", field=field
        )
    return text


def bounded(value: object, *, field: str, limit: int) -> str:
    """Returns ``value`` when it is a non-empty string of at most ``limit`` characters
    without control characters (for names no stricter rule applies to)."""
    text = _text(value, field=field)
    if len(text) > limit:
        raise InvalidInput(f"{_shown(text)} is {len(text)} characters long; at most {limit}", field=field)
    return text


def pod_uid(value: object, *, field: str) -> str:
    return bounded(value, field=field, limit=POD_UID_MAX)


def netns(value: object, *, field: str) -> str:
    return bounded(value, field=field, limit=NETNS_MAX)


def control_character(text: str) -> int | None:
    """Returns the offset of the first control (or other non-printable) character, or None."""
    if text.isprintable():
        return None
    return next(index for index, c in enumerate(text) if not c.isprintable())


_LABEL_CHARACTERS = "lowercase letters, digits and '-', starting and ending with a letter or digit"
_LABEL_RULE = f"a DNS-1123 label ({_LABEL_CHARACTERS})"
_SUBDOMAIN_RULE = "a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', each label starting and ending with a letter or digit)"
_CNI_NAME_RULE = "an alphanumeric character, then alphanumerics, '_', '.' or '-' (CNI SPEC)"


def _text(value: object, *, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"expected a non-empty string, got {_shown(value)}", field=field)
    offset = control_character(value)
    if offset is not None:
        kind = "control" if unicodedata.category(value[offset]) == "Cc" else "non-printable"
        raise InvalidInput(
            f"{_shown(value)} contains the {kind} character {value[offset]!r} at offset {offset}", field=field
        )
    return value


def _matching(value: object, pattern: re.Pattern[str], limit: int, *, field: str, what: str) -> str:
    text = bounded(value, field=field, limit=limit)
    if not pattern.fullmatch(text):
        raise InvalidInput(f"{_shown(text)} is not {what}", field=field)
    return text


def _shown(value: object) -> str:
    """``value`` as an error message shows it: quoted, escaped, cut to a readable length."""
    if isinstance(value, str) and len(value) > _SHOWN_MAX:
        return f"{value[:_SHOWN_MAX]!r}..."
    return repr(value)
