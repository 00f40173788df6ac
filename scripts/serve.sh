#!/usr/bin/env bash
# Installs ipamd into .venv and starts the daemon on its embedded default:
# SQLite at /var/lib/ipamd/ipamd.db, Unix socket /run/ipamd/ipamd.sock.
# Extra arguments go to `ipamd serve` (see docs/cli.md).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check .
exec .venv/bin/ipamd serve "$@"
