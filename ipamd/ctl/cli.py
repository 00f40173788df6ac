"""``ipamctl``: the operator CLI over the ipamd REST API (docs/operations.md).

Every command prints its result on stdout and any error as one line on stderr with a
non-zero exit status; no traceback ever reaches the operator.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ipamd.core.history import MAX_LIMIT, parse_duration, parse_moment
from ipamd.ctl import adopt, output
from ipamd.ctl.apply import apply_all
from ipamd.ctl.client import Client, CtlError, segment
from ipamd.errors import InvalidInput
from ipamd.manifests import ManifestError, parse_documents

DEFAULT_SOCKET = "/run/ipamd/ipamd.sock"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Entries per request when `history` fetches every page.
HISTORY_PAGE = MAX_LIMIT

RESOURCES = {
    "subnets": "subnets",
    "subnet": "subnets",
    "pools": "pools",
    "pool": "pools",
    "reservations": "reservations",
    "reservation": "reservations",
    "allocations": "allocations",
    "allocation": "allocations",
}
TABLES: dict[str, Callable[[Any], str]] = {
    "subnets": output.subnets_table,
    "pools": output.pools_table,
    "reservations": output.reservations_table,
    "allocations": output.allocations_table,
}


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="ipamctl", description="operate ipamd: inspect and change subnets, pools, reservations, allocations"
    )
    parser.add_argument(
        "--socket", default=env("IPAMD_SOCKET", DEFAULT_SOCKET), help="the daemon's Unix socket (env IPAMD_SOCKET)"
    )
    parser.add_argument(
        "--server",
        default=env("IPAMCTL_SERVER"),
        help="http://HOST:PORT of the TCP listener instead of the socket (env IPAMCTL_SERVER)",
    )
    parser.add_argument(
        "--token", default=env("IPAMCTL_TOKEN"), help="bearer token for the TCP listener (env IPAMCTL_TOKEN)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_output(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "-o", "--output", choices=output.FORMATS, default="table", help="table (default), json or yaml"
        )
        return sub

    get = with_output(commands.add_parser("get", help="list objects, or show one"))
    get.add_argument(
        "resource", choices=sorted(RESOURCES), metavar="RESOURCE", help="subnets, pools, reservations or allocations"
    )
    get.add_argument("name", nargs="?", help="a name (subnets, pools) or an id (reservations, allocations)")
    get.add_argument("--subnet", help="allocations: only this subnet")
    get.add_argument("--namespace", "-n", help="allocations: only this namespace")
    get.add_argument("--pod", help="allocations: only this pod")
    get.add_argument("--provider", help="allocations: only this network key (provider)")
    get.add_argument("--node", help="allocations: only those made on this node")
    get.add_argument("--cluster", help="allocations: only those of this Kubernetes cluster (--cluster-name)")

    describe = with_output(
        commands.add_parser("describe", help="show one subnet or pool in detail, with its free ranges")
    )
    describe.add_argument(
        "resource", choices=("subnet", "subnets", "pool", "pools"), metavar="RESOURCE", help="subnet or pool"
    )
    describe.add_argument("name")

    who_has = with_output(commands.add_parser("who-has", help="who holds an address now"))
    who_has.add_argument("address")

    history = with_output(commands.add_parser("history", help="who held an address, and when"))
    history.add_argument("address")
    history.add_argument(
        "--since",
        metavar="WHEN",
        help="only holdings not released before WHEN: a time (2026-11-29T09:00:00Z) or a duration ago (90m, 12h, 7d)",
    )
    history.add_argument(
        "--until", metavar="WHEN", help="only holdings that started before WHEN (same forms as --since)"
    )
    history.add_argument("--newest-first", action="store_true", help="the latest holding first")
    history.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help=f"one page of at most N entries (1 to {MAX_LIMIT}), and the command for the next page; default: every page",
    )
    history.add_argument(
        "--continue", dest="continue_token", metavar="TOKEN", help="the page after the one that printed TOKEN"
    )

    apply = commands.add_parser(
        "apply", help="create or update objects from YAML (ipamd.io/v1, or Kube-OVN Subnet/IPPool)"
    )
    apply.add_argument(
        "-f", "--filename", required=True, action="append", help="a YAML file, or - for stdin (repeatable)"
    )

    delete = commands.add_parser("delete", help="delete a subnet, pool or reservation")
    delete.add_argument(
        "resource", choices=("subnet", "subnets", "pool", "pools", "reservation", "reservations"), metavar="RESOURCE"
    )
    delete.add_argument("name", help="subnet or pool name; reservation id, or its address with --subnet")
    delete.add_argument("--force", action="store_true", help="subnet: release its live allocations first")
    delete.add_argument("--subnet", help="reservation given by address: its subnet")

    release = commands.add_parser("release", help="release an allocation (every address it holds)")
    release.add_argument("allocation_id", metavar="ALLOCATION_ID")

    imports = commands.add_parser(
        "import",
        help="adopt the addresses running pods carry from Kube-OVN, Whereabouts or host-local (see docs/deploy.md)",
    )
    imports.add_argument("source", choices=adopt.SOURCES, help="the IPAM the pods' addresses come from")
    imports.add_argument(
        "--kubeconfig",
        default=env("KUBECONFIG"),
        help="read the cluster with this kubeconfig (default: env KUBECONFIG, else in-cluster)",
    )
    imports.add_argument(
        "--from-file",
        action="append",
        metavar="FILE",
        help="read objects saved with kubectl get -o json|yaml instead of the cluster (repeatable)",
    )
    imports.add_argument(
        "--data-dir",
        default=adopt.HOST_LOCAL_DIR,
        help=f"host-local: its data directory (default {adopt.HOST_LOCAL_DIR})",
    )
    imports.add_argument(
        "--cni-config",
        action="append",
        metavar="FILE",
        help="host-local: a CNI config file naming the network of a data directory (repeatable)",
    )
    imports.add_argument("--dry-run", action="store_true", help="print what would be adopted; change nothing")
    return parser


# ---------------------------------------------------------------------------- commands


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    resource = RESOURCES[args.resource]
    filters = {
        key: getattr(args, key)
        for key in ("subnet", "namespace", "pod", "provider", "node", "cluster")
        if getattr(args, key)
    }
    if filters and resource != "allocations":
        raise CtlError(f"--{next(iter(filters))} filters allocations only")
    if args.name is not None:
        if resource in ("reservations", "allocations"):
            _numeric(args.name, what=resource[:-1])
        item = client.get(f"/v1/{resource}/{segment(args.name)}")
        _print(item, args.output, lambda one: TABLES[resource]([one]))
        return EXIT_OK
    listing = client.get(f"/v1/{resource}", query=filters or None)
    _print(
        listing, args.output, lambda data: TABLES[resource](data["items"]) if data["items"] else f"No {resource} found."
    )
    return EXIT_OK


def cmd_describe(client: Client, args: argparse.Namespace) -> int:
    if args.resource.startswith("pool"):
        pool = client.get(f"/v1/pools/{segment(args.name)}")
        _print(pool, args.output, output.describe_pool)
        return EXIT_OK
    subnet = client.get(f"/v1/subnets/{segment(args.name)}")
    if args.output != "table":
        print(output.dump(subnet, args.output))
        return EXIT_OK
    pools = [pool for pool in client.get("/v1/pools")["items"] if pool["subnet"] == args.name]
    reservations = [r for r in client.get("/v1/reservations")["items"] if r["subnet"] == args.name]
    print(output.describe_subnet(subnet, pools, reservations))
    return EXIT_OK


def cmd_who_has(client: Client, args: argparse.Namespace) -> int:
    info = client.get(f"/v1/ips/{segment(args.address)}", query={"order": "newest", "limit": "1"})
    if args.output != "table":
        print(output.dump(info, args.output))
    elif info["holders"]:
        print(output.holders_table(info["holders"]))
    else:
        last = info["history"][0] if info["history"] else None
        suffix = ""
        if last is not None:
            who = f"{last['namespace']}/{last['pod']}" if last.get("namespace") else last.get("pod")
            suffix = f"; last held by {who} {last.get('interface')} until {last.get('to')}"
        print(f"nobody holds {info['address']}{suffix}")
    return EXIT_OK


def cmd_history(client: Client, args: argparse.Namespace) -> int:
    query = {"order": "newest" if args.newest_first else "oldest"}
    for name in ("since", "until"):
        if getattr(args, name) is not None:
            query[name] = _moment(getattr(args, name), flag=f"--{name}")
    if args.limit is not None and not 1 <= args.limit <= MAX_LIMIT:
        raise CtlError(f"--limit {args.limit}: expected 1 to {MAX_LIMIT}")
    query["limit"] = str(args.limit or HISTORY_PAGE)
    if args.continue_token:
        query["continue"] = args.continue_token
    path = f"/v1/ips/{segment(args.address)}"
    info = client.get(path, query=query)
    # Without --limit, every page: the token of each resumes exactly after the previous one.
    while args.limit is None and info["continue"]:
        page = client.get(path, query={**query, "continue": info["continue"]})
        info = {**page, "history": info["history"] + page["history"]}
    _print(
        info,
        args.output,
        lambda data: output.history_table(data["history"]) if data["history"] else f"no history for {data['address']}",
    )
    if info["continue"] and args.output == "table":
        _stderr(f"more entries: run the same command with --continue {info['continue']}")
    return EXIT_OK


def cmd_apply(client: Client, args: argparse.Namespace) -> int:
    manifests = []
    for filename in args.filename:
        manifests += parse_documents(_read(filename), source="stdin" if filename == "-" else filename)
    failures = apply_all(client, manifests, say=print, warn=_stderr)
    return EXIT_FAILED if failures else EXIT_OK


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    kind = args.resource.rstrip("s")
    if kind == "subnet":
        result = client.delete(f"/v1/subnets/{segment(args.name)}", query={"force": "true"} if args.force else None)
        released = f" (released {result['released']} allocation(s))" if result.get("released") else ""
        print(f"subnet/{args.name} deleted{released}")
    elif kind == "pool":
        client.delete(f"/v1/pools/{segment(args.name)}")
        print(f"pool/{args.name} deleted")
    else:
        reservation_id = _reservation_id(client, args.name, subnet=args.subnet)
        client.delete(f"/v1/reservations/{reservation_id}")
        print(f"reservation/{reservation_id} deleted")
    return EXIT_OK


def cmd_release(client: Client, args: argparse.Namespace) -> int:
    path = f"/v1/allocations/{_numeric(args.allocation_id, what='allocation')}"
    # Release exactly the allocation read here: if it passes to another pod instance in
    # between, the daemon answers 412 instead of releasing the new holder.
    _, headers = client.exchange("GET", path)
    etag = headers.get("ETag")
    allocation = client.delete(path, headers={"If-Match": etag} if etag else None)
    owner = allocation["owner"]
    pod = f"{owner['namespace']}/{owner['pod']}" if owner.get("namespace") else owner["pod"]
    print(
        f"allocation/{allocation['id']} released: {output.addresses_of(allocation)} of {pod} {owner['interface']} in subnet {allocation['subnet']}"
    )
    return EXIT_OK


def cmd_import(client: Client, args: argparse.Namespace) -> int:
    problems = adopt.run_import(client, args, say=print, warn=_stderr)
    return EXIT_FAILED if problems else EXIT_OK


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "get": cmd_get,
    "describe": cmd_describe,
    "who-has": cmd_who_has,
    "history": cmd_history,
    "apply": cmd_apply,
    "delete": cmd_delete,
    "release": cmd_release,
    "import": cmd_import,
}


# ---------------------------------------------------------------------------- helpers


def _print(data: Any, fmt: str, as_table: Callable[[Any], str]) -> None:
    print(output.dump(data, fmt) if fmt != "table" else as_table(data))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _moment(text: str, *, flag: str) -> str:
    """Returns WHEN as an RFC 3339 UTC time: a duration means that long ago."""
    try:
        return (datetime.now(UTC) - timedelta(seconds=parse_duration(text, field=flag))).strftime("%Y-%m-%dT%H:%M:%SZ")
    except InvalidInput:
        pass
    try:
        return parse_moment(text, field=flag).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except InvalidInput:
        raise CtlError(
            f"{flag} {text!r}: expected a time such as 2026-11-29T09:00:00Z, or a duration ago such as 90m, 12h or 7d"
        ) from None


def _numeric(text: str, *, what: str) -> str:
    if not text.isdigit():
        raise CtlError(f"{what} ids are numbers, got {text!r}")
    return text


def _reservation_id(client: Client, text: str, *, subnet: str | None) -> str:
    """Returns the id of a reservation given by id, or by address (with --subnet when ambiguous)."""
    if text.isdigit():
        return text
    matches = [
        r
        for r in client.get("/v1/reservations")["items"]
        if r["address"] == text and (subnet is None or r["subnet"] == subnet)
    ]
    if not matches:
        raise CtlError(f"no reservation of {text}{' in subnet ' + subnet if subnet else ''}")
    if len(matches) > 1:
        raise CtlError(
            f"{text} is reserved in subnets {', '.join(r['subnet'] for r in matches)}; say which with --subnet"
        )
    return str(matches[0]["id"])


def _read(filename: str) -> str:
    if filename == "-":
        return sys.stdin.read()
    try:
        with open(filename, encoding="utf-8") as handle:
            return handle.read()
    except OSError as e:
        raise CtlError(f"cannot read {filename}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise CtlError(f"{filename} is not UTF-8 text") from e


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        client = Client(socket_path=args.socket, server=args.server, token=args.token, timeout=args.timeout)
        return COMMANDS[args.command](client, args)
    except (CtlError, InvalidInput) as e:
        _stderr(f"ipamctl: {e.message}")
    except ManifestError as e:
        _stderr(f"ipamctl: {e}")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `ipamctl get allocations | head`: the reader is gone, nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - the promise is one line, never a traceback
        _stderr(f"ipamctl: unexpected {type(e).__name__}: {e} (please report this)")
    return EXIT_FAILED
