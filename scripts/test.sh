#!/usr/bin/env bash
# The test command of the README: installs what the tests need (PM2 5/6/7, pnpm, tsc and
# Node.js 22 from the npm registry into .tools/; Prometheus, Redis and D-Bus from Debian),
# then vets and runs every Go test against the real tools. Under CI the real-LivOS test
# must run: its trees (../shared/livos-real) being absent fails it instead of skipping it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$(bash scripts/install-tools.sh)
bash scripts/install-packages.sh >&2
if [ -n "${CI:-}" ]; then
  export LIVINITY_REQUIRE_REAL_LIVOS=1
fi
export PATH="$bin:$PATH"
go vet ./...
go test -count=1 -timeout 30m "$@" ./...
