#!/usr/bin/env bash
# Installs the peer supervisors the side-by-side benchmark (bench/, see bench/README.md)
# runs beside the agent:
#   monit, supervisord   Debian packages (apt-get install -y monit supervisor); their
#                        system services are not started by the benchmark, which runs its
#                        own instances with their own configs
#   process-compose      built with `go build` from its public repository
#                        (F1bonacc1/process-compose) into .tools/process-compose/, linked as
#                        .tools/bin/process-compose. The Go module proxy does not serve it,
#                        so the source must be there first: PROCESS_COMPOSE_SRC=<dir> (a
#                        checkout), or PROCESS_COMPOSE_GIT=<git dir> (a clone or bare mirror,
#                        HEAD is built), or a clone made here from GitHub when it is reachable.
#                        Its dependencies come from the Go module proxy.
# Idempotent: what is installed already is kept (PEERS_REBUILD=1 rebuilds process-compose).
# Prints the PATH entry to use.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=$root/.tools
mkdir -p "$tools/bin"

# Debian packages
missing=()
command -v monit >/dev/null || missing+=(monit)
command -v supervisord >/dev/null || missing+=(supervisor)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-peers: apt-get install -y ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y "${missing[@]}" >&2 || { $sudo apt-get update >&2 && $sudo apt-get install -y "${missing[@]}" >&2; }
fi

# process-compose
pc=$tools/process-compose
if [ ! -x "$pc/process-compose" ] || [ -n "${PEERS_REBUILD:-}" ]; then
  src=${PROCESS_COMPOSE_SRC:-}
  if [ -z "$src" ]; then
    src=$pc/src
    rm -rf "$src"
    mkdir -p "$src"
    git_dir=${PROCESS_COMPOSE_GIT:-}
    if [ -z "$git_dir" ] && [ -d /work/.mirror/F1bonacc1+process-compose/repo ]; then
      git_dir=/work/.mirror/F1bonacc1+process-compose/repo
    fi
    if [ -n "$git_dir" ]; then
      echo "install-peers: process-compose source from $git_dir ($(git --git-dir="$git_dir" describe --tags --always HEAD))" >&2
      git --git-dir="$git_dir" archive HEAD | tar -x -C "$src"
      git --git-dir="$git_dir" describe --tags --always HEAD >"$pc/VERSION"
    else
      echo "install-peers: git clone https://github.com/F1bonacc1/process-compose" >&2
      rm -rf "$src"
      git clone --depth 1 https://github.com/F1bonacc1/process-compose "$src" >&2
      git -C "$src" describe --tags --always HEAD >"$pc/VERSION"
    fi
  fi
  version=$(cat "$pc/VERSION" 2>/dev/null || echo unknown)
  # github.com/f1bonacc1/glippy (the TUI's clipboard copy) is refused by the Go module proxy
  # (403 for every version it needs): a stub that reports no clipboard takes its place. The
  # benchmark runs process-compose headless (-t=false), where the clipboard is never used.
  if grep -q 'f1bonacc1/glippy' "$src/go.mod"; then
    mkdir -p "$pc/glippy-stub"
    printf 'module github.com/f1bonacc1/glippy\n\ngo 1.21\n' >"$pc/glippy-stub/go.mod"
    cat >"$pc/glippy-stub/glippy.go" <<'EOF'
// Package glippy is a stand-in for github.com/f1bonacc1/glippy, which the Go module proxy
// does not serve: there is no clipboard (scripts/install-peers.sh).
package glippy

import "errors"

// Method is how text reached the clipboard.
type Method int

// The methods the real package names.
const (
	MethodNative Method = iota
	MethodOSC52
)

var errNone = errors.New("no clipboard in this build of process-compose (glippy stub)")

// Set fails: there is no clipboard.
func Set(string) error { return errNone }

// SetWithMethod fails: there is no clipboard.
func SetWithMethod(string) (Method, error) { return MethodNative, errNone }
EOF
    (cd "$src" && go mod edit -replace github.com/f1bonacc1/glippy="$pc/glippy-stub")
  fi
  echo "install-peers: go build process-compose $version (dependencies from the Go module proxy)" >&2
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-s -w -X github.com/f1bonacc1/process-compose/src/config.Version=$version" \
    -o "$pc/process-compose" .) >&2
fi
ln -sfn "$pc/process-compose" "$tools/bin/process-compose"
echo "$tools/bin"
