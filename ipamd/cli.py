"""``ipamd``: serve | db upgrade | install-cni."""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ipamd.config import add_serve_arguments, settings_from
from ipamd.errors import IpamError
from ipamd.logs import setup_logging


def plugin_binary() -> Path:
    """Returns the built CNI plugin: the source tree's, else the one shipped in the package."""
    in_tree = Path(__file__).resolve().parent.parent / "plugin" / "bin" / "ipamd"
    if in_tree.is_file():
        return in_tree
    return Path(str(importlib.resources.files("ipamd.shim").joinpath("bin/ipamd")))


class PluginMissing(Exception):
    """No built plugin to install."""


def _probe(path: Path) -> None:
    """Runs VERSION on a freshly written plugin: a file that cannot run on this machine is
    never renamed into place."""
    try:
        done = subprocess.run([str(path)], input=b"", capture_output=True, env={"CNI_COMMAND": "VERSION"}, timeout=30)
    except OSError as e:
        raise OSError(f"the plugin written to {path} does not run here: {e}") from e
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = None
    if done.returncode != 0 or not isinstance(answer, dict) or "supportedVersions" not in answer:
        raise OSError(
            f"the plugin written to {path} failed VERSION (exit {done.returncode}): {done.stdout[:200]!r} {done.stderr[:200]!r}"
        )


def _install_atomically(source: Path, path: Path) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle, source.open("rb") as original:
            shutil.copyfileobj(original, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o755)
        _probe(Path(temp_name))
        # rename() replaces the old file in one step: a runtime executing the plugin
        # meanwhile runs either the old or the new file, never half of one.
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def install_cni(dest: str, names: list[str], *, binary: Path | None = None) -> list[Path]:
    """Installs the plugin into ``dest`` under each name; returns the paths written."""
    source = binary or plugin_binary()
    if not source.is_file():
        raise PluginMissing(
            f"no built CNI plugin at {source}: build it with scripts/build-plugin.sh (needs Go, Debian package golang-go)"
        )
    directory = Path(dest)
    directory.mkdir(parents=True, exist_ok=True)
    installed = []
    for name in names:
        _install_atomically(source, directory / name)
        installed.append(directory / name)
    return installed


def link_socket(spec: str) -> Path:
    """Makes ``LINK`` a symlink to ``TARGET`` (``LINK=TARGET``), for clients with a fixed socket path.

    Kube-OVN NADs name ``/run/openvswitch/kube-ovn-daemon.sock`` in ``server_socket``: a
    link there lets them reach ipamd unedited. A file that is not a symlink (Kube-OVN's own
    socket, on a cluster still running it) is never replaced.
    """
    link_text, equals, target = spec.partition("=")
    if not equals or not link_text.startswith("/") or not target.startswith("/"):
        raise OSError(f"--link-socket {spec!r}: expected /absolute/link=/absolute/target")
    link = Path(link_text)
    if link.exists() and not link.is_symlink():
        raise OSError(f"{link} exists and is not a symlink (Kube-OVN's own socket?): refusing to replace it")
    link.parent.mkdir(parents=True, exist_ok=True)
    temp = link.with_name(f".{link.name}.{os.getpid()}")
    temp.unlink(missing_ok=True)
    os.symlink(target, temp)
    os.replace(temp, link)
    return link


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ipamd", description="cluster-wide IPAM for Kubernetes secondary networks")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the daemon")
    add_serve_arguments(serve_parser)
    db_parser = commands.add_parser("db", help="database maintenance")
    db_commands = db_parser.add_subparsers(dest="db_command", required=True)
    upgrade_parser = db_commands.add_parser("upgrade", help="migrate the schema to the newest version")
    upgrade_parser.add_argument(
        "--database-url", default=os.environ.get("IPAMD_DATABASE_URL", "sqlite+aiosqlite:////var/lib/ipamd/ipamd.db")
    )
    install_parser = commands.add_parser("install-cni", help="install the CNI plugin into a CNI bin directory")
    install_parser.add_argument("--dest", required=True, help="CNI bin directory, e.g. /opt/cni/bin")
    install_parser.add_argument("--name", default="ipamd", help="file name of the plugin")
    install_parser.add_argument(
        "--also-as", action="append", default=[], help="install a copy under another name, e.g. kube-ovn"
    )
    install_parser.add_argument(
        "--link-socket",
        action="append",
        default=[],
        metavar="LINK=TARGET",
        help="also make LINK a symlink to the daemon's socket TARGET, e.g. /run/openvswitch/kube-ovn-daemon.sock=/run/ipamd/ipamd.sock",
    )
    args = parser.parse_args(argv)

    try:
        if args.command == "serve":
            settings = settings_from(args)
            setup_logging(fmt=settings.log_format, level=settings.log_level)
            from ipamd.server import serve

            asyncio.run(serve(settings))
        elif args.command == "db":
            setup_logging()
            from ipamd.store.engine import run_upgrade_blocking

            run_upgrade_blocking(args.database_url)
            print("database is at the newest schema")
        elif args.command == "install-cni":
            for path in install_cni(args.dest, [args.name, *args.also_as]):
                print(f"installed {path}")
            for spec in args.link_socket:
                print(f"linked {link_socket(spec)}")
    except IpamError as e:
        print(f"ipamd: {e.message}", file=sys.stderr)
        return 2
    except PluginMissing as e:
        print(f"ipamd: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"ipamd: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
