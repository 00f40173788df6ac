"""``ipamd``: serve | db upgrade | install-cni."""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import os
import sys
import tempfile
from pathlib import Path

from ipamd.config import add_serve_arguments, settings_from
from ipamd.errors import IpamError
from ipamd.logs import setup_logging


def shim_source() -> Path:
    """Returns the path of the CNI shim shipped with the package (or the source tree)."""
    in_tree = Path(__file__).resolve().parent.parent / "plugin" / "ipamd"
    if in_tree.is_file():
        return in_tree
    return Path(str(importlib.resources.files("ipamd.shim").joinpath("ipamd")))


SHIM_MODULE = "ipamd_cni_shim"

# What `install-cni` writes under each plugin name. The shim itself goes beside it as a
# module: imported rather than run as a script, its bytecode is cached in __pycache__, which
# spares Python compiling 800 lines on each of the two calls per pod attachment (about 6 ms
# each on a 2-core machine, a fifth of a macvlan ADD+DEL; see docs/benchmarks.md).
LAUNCHER = f"""#!/usr/bin/env -S python3 -I -S
# ipamd CNI IPAM plugin, installed by `ipamd install-cni`: runs {SHIM_MODULE}.py beside it.
import sys

sys.path.insert(0, __file__.rpartition("/")[0] or ".")
try:
    from {SHIM_MODULE} import main
except ImportError as error:
    sys.stdout.write('{{"cniVersion": "0.3.1", "code": 999, "msg": "ipamd shim module missing beside %s (%s): run ipamd install-cni again"}}\\n' % (__file__, error))
    sys.exit(1)
sys.exit(main())
"""


def _write_atomically(path: Path, content: bytes, mode: int) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        # rename() replaces the old file in one step: a runtime executing the shim
        # meanwhile sees either the old or the new file, never half of one.
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def install_cni(dest: str, names: list[str], *, single_file: bool = False) -> list[Path]:
    """Installs the shim into ``dest`` under each name; returns the paths written.

    By default each name is a small launcher and the shim a module beside it (bytecode
    cached); ``single_file`` copies the shim itself under each name instead, for a bin
    directory where Python may not write its cache or where one file per plugin is required.
    """
    source = shim_source().read_bytes()
    directory = Path(dest)
    directory.mkdir(parents=True, exist_ok=True)
    installed = []
    if not single_file:
        # The module first: a launcher must never find its module missing.
        module = directory / f"{SHIM_MODULE}.py"
        _write_atomically(module, source, 0o644)
        installed.append(module)
    for name in names:
        _write_atomically(directory / name, source if single_file else LAUNCHER.encode(), 0o755)
        installed.append(directory / name)
    return installed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ipamd", description="cluster-wide IPAM for Kubernetes secondary networks")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the daemon")
    add_serve_arguments(serve_parser)
    db_parser = commands.add_parser("db", help="database maintenance")
    db_commands = db_parser.add_subparsers(dest="db_command", required=True)
    upgrade_parser = db_commands.add_parser("upgrade", help="migrate the schema to the newest version")
    upgrade_parser.add_argument("--database-url", default=os.environ.get("IPAMD_DATABASE_URL", "sqlite+aiosqlite:////var/lib/ipamd/ipamd.db"))
    install_parser = commands.add_parser("install-cni", help="install the CNI shim into a CNI bin directory")
    install_parser.add_argument("--dest", required=True, help="CNI bin directory, e.g. /opt/cni/bin")
    install_parser.add_argument("--name", default="ipamd", help="file name of the shim")
    install_parser.add_argument("--also-as", action="append", default=[], help="install a copy under another name, e.g. kube-ovn")
    install_parser.add_argument(
        "--single-file", action="store_true", help="copy the whole shim under each name (no module beside it, no bytecode cache)"
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
            for path in install_cni(args.dest, [args.name, *args.also_as], single_file=args.single_file):
                print(f"installed {path}")
    except IpamError as e:
        print(f"ipamd: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"ipamd: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
