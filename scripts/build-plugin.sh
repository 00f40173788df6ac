#!/usr/bin/env bash
# Builds the CNI plugin (plugin/*.go) into plugin/bin/ipamd: static (no cgo, no program
# interpreter), stripped, standard library only. Needs Go 1.19 or newer (Debian: golang-go).
set -euo pipefail
cd "$(dirname "$0")/../plugin"
# A build cache outside $HOME works for root in a fresh container as well.
export GOCACHE="${GOCACHE:-${XDG_CACHE_HOME:-/tmp}/ipamd-go-build}" GOTOOLCHAIN=local
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w -buildid=' -o bin/ipamd .
