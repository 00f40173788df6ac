"""The error tables of docs/api.md and docs/shim.md name every error of the hierarchy
(ipamd.errors) with the HTTP status and CNI code it is answered with."""

from __future__ import annotations

import re
from pathlib import Path

from ipamd import errors

DOCS = Path(__file__).resolve().parents[2] / "docs"


def hierarchy() -> list[type[errors.IpamError]]:
    found, pending = [], [errors.IpamError]
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending += [sub for sub in cls.__subclasses__() if sub.__module__ == errors.__name__]
    return found


def table_rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ")
    ]


def codes_in(cell: str) -> set[int]:
    """The CNI codes a cell names: '11, or 5' -> {11, 5}; '100-105' -> 100 to 105."""
    codes: set[int] = set()
    for first, last in re.findall(r"(\d+)(?:-(\d+))?", cell):
        codes.update(range(int(first), int(last or first) + 1))
    return codes


def test_api_md_names_each_error_with_its_http_status_and_cni_code():
    rows = table_rows((DOCS / "api.md").read_text())
    http_rows = {(row[0], row[1].strip("`")): codes_in(row[2]) for row in rows if len(row) == 4 and row[0].isdigit()}
    cni_rows = {(int(row[0]), row[1].strip("`")) for row in rows if len(row) == 3 and row[0].isdigit()}
    missing = [
        f"{cls.__name__}: {cls.http_status} {cls.code} {cls.cni_code}"
        for cls in hierarchy()
        if cls.cni_code not in http_rows.get((str(cls.http_status), cls.code), set())
        and (cls.cni_code, cls.code) not in cni_rows
    ]
    assert missing == []


def test_shim_md_lists_every_cni_code_the_daemon_answers():
    rows = table_rows((DOCS / "shim.md").read_text())
    daemon_codes = set().union(*(codes_in(row[0]) for row in rows if len(row) == 3 and "daemon" in row[1]))
    missing = sorted({cls.cni_code for cls in hierarchy()} - daemon_codes)
    assert missing == []
