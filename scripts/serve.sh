#!/usr/bin/env bash
# Installs ipamd into .venv and starts the daemon on its embedded default:
# SQLite at /var/lib/ipamd/ipamd.db, Unix socket /run/ipamd/ipamd.sock.
# Extra arguments go to `ipamd serve` (see docs/cli.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# Go builds the CNI plugin that `ipamd install-cni` puts on the node (shipped in the package).
if ! command -v go >/dev/null 2>&1; then
  as_root=""
  [ "$(id -u)" -eq 0 ] || as_root="sudo"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends golang-go >/dev/null
fi
bash scripts/build-plugin.sh
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check .
exec .venv/bin/ipamd serve "$@"
