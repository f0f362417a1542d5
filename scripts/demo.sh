#!/usr/bin/env bash
# The main job of the README on the bundled demo: installs PM2 and pnpm from the npm
# registry into .tools/, builds livinity-agent into bin/, and onboards a copy of the
# LivOS-shaped demo tree in .demo/ (its own config, state dir and PM2_HOME), ending with
# all five services healthy. Extra arguments go to `livinity-agent demo` (e.g. --dir DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$(bash scripts/install-tools.sh):$PATH"
mkdir -p bin
# static (no cgo): the agent needs no C library, and it saves ~2 MB of resident libc/NSS pages
CGO_ENABLED=0 go build -ldflags "-X main.commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" -o bin/livinity-agent ./cmd/livinity-agent
bin/livinity-agent demo "$@"
cat <<'MSG'

The demo services run under PM2 with PM2_HOME=.demo/pm2. Next:
  bin/livinity-agent --config .demo/setup.json --state-dir .demo/state --pm2-home .demo/pm2 --runtime-dir .demo/run run
      supervise them (metrics on http://127.0.0.1:19847/metrics, the demo config's agent.metrics.listen); in another terminal:
  bin/livinity-agent --runtime-dir .demo/run status
  PM2_HOME=.demo/pm2 .tools/bin/pm2 kill      stop the demo services
MSG
