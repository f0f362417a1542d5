#!/usr/bin/env bash
# The test command of the README: installs what the tests need (PM2 5/6/7, pnpm and tsc
# from the npm registry into .tools/; Prometheus and promtool from Debian), then vets and
# runs every Go test against the real tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=$(bash scripts/install-tools.sh)
bash scripts/install-prometheus.sh >&2
export PATH="$bin:$PATH"
go vet ./...
go test -count=1 -timeout 30m "$@" ./...
