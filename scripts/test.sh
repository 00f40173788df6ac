#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/core -q`).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root=""
[ "$(id -u)" -eq 0 ] || as_root="sudo"

# Real components, not mocks: the CNI plugins the runtime would call, network namespaces,
# a PostgreSQL server the tests start themselves, kubectl to check the API double; Go to
# build ipamd's own CNI plugin.
packages=(containernetworking-plugins iproute2 iputils-ping postgresql golang-go)
# Any kubectl will do; Debian's kubernetes-client would collide with one installed otherwise
# (e.g. from google-cloud-cli, which owns /usr/bin/kubectl too).
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# One layout for every file (ruff's formatter and linter, configured in pyproject.toml).
.venv/bin/ruff format --check --quiet .
.venv/bin/ruff check --quiet .

# The CNI plugin the e2e tests install: vetted, unit-tested and built before pytest runs.
# (Go needs a build cache; without $HOME it has no default one.)
[ -n "${HOME:-}" ] || export GOCACHE="${GOCACHE:-/tmp/ipamd-go-build}"
(cd plugin && go vet ./... && go test -count=1 ./...)
bash scripts/build-plugin.sh

exec .venv/bin/pytest "$@"
