# Functions shared by the bench scripts; sourced, never run. The sourcing script has cd'ed
# to the repository root and put the project-local tools on PATH.
#
# A demo environment is a directory DIR holding the demo tree (DIR/demo), the agent binary
# it runs (DIR/livinity-agent), the agent's log and pid (DIR/agent.log, DIR/agent.pid) and
# its runtime dir: demo_prepare, demo_onboard and agent_start build it up, env_down tears
# it down (agent first, then the PM2 daemon and everything PM2 runs).

# machine_info prints the machine, the tools and the load, as every benchmark's header.
machine_info() {
  local pm2pkg
  # (not `pm2 --version`: it would start a daemon under ~/.pm2)
  pm2pkg="$(dirname "$(readlink -f "$(command -v pm2)")")/../package.json"
  echo "machine: $(nproc) cores ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr)"
  echo "tools: $(go version | cut -d' ' -f3), node $(node --version), pm2 $(node -p 'require(process.argv[1]).version' "$pm2pkg")"
  echo "load: $(uptime | sed 's/.*load average/load average/')"
}

# agent_build DIR: DIR/livinity-agent, a static build of ./cmd/livinity-agent, or a copy of
# $AGENT_BIN when that is set.
agent_build() {
  if [ -n "${AGENT_BIN:-}" ]; then
    cp "$AGENT_BIN" "$1/livinity-agent"
  else
    CGO_ENABLED=0 go build -o "$1/livinity-agent" ./cmd/livinity-agent
  fi
}

# lv_cmd DIR: sets the array LV_CMD to livinity-agent with DIR's config, state, PM2_HOME and
# runtime dir.
lv_cmd() {
  LV_CMD=("$1/livinity-agent" --config "$1/demo/setup.json" --state-dir "$1/demo/state"
    --pm2-home "$1/demo/pm2" --runtime-dir "$1/run")
}

# lv DIR ARGS...: runs livinity-agent with DIR's flags (lv_cmd) and ARGS.
lv() {
  local LV_CMD
  lv_cmd "$1"; shift
  "${LV_CMD[@]}" "$@"
}

# demo_prepare DIR [SERVICES_JSON]: lays out the demo tree and its setup.json in DIR/demo
# (a dry run changes nothing else), then sets free loopback ports and 1 s liveness and
# readiness probes (timeoutSeconds 1) for the five services; SERVICES_JSON, an object of
# per-service settings, is merged over that (e.g. '{"nexus-worker":{"memoryLimitMB":1000}}').
# The tree may be changed before demo_onboard builds it.
demo_prepare() {
  local dir=$1 extra=${2:-'{}'}
  "$dir/livinity-agent" demo --dir "$dir/demo" --dry-run >"$dir/prepare.log" 2>&1 || { cat "$dir/prepare.log" >&2; return 1; }
  python3 - "$dir/demo/setup.json" "$extra" <<'EOF'
import json, os, socket, sys
path, extra = sys.argv[1], json.loads(sys.argv[2])
with open(path) as f:
    cfg = json.load(f)
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in socks]
for s in socks:
    s.close()
cfg["ports"] = dict(zip(["api", "mcp", "memory", "livos"], ports))
cfg["agent"]["metrics"]["listen"] = "127.0.0.1:%d" % ports[4]
fast = {"periodSeconds": 1, "timeoutSeconds": 1}
services = {name: {"liveness": dict(fast), "readiness": dict(fast)}
            for name in ["livos", "nexus-core", "nexus-worker", "nexus-memory", "nexus-mcp"]}
for name, settings in extra.items():
    services[name].update(settings)
cfg["agent"]["services"] = services
tmp = path + ".tmp"
with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
    json.dump(cfg, f, indent=2)
os.replace(tmp, path)
EOF
}

# demo_onboard DIR: the real onboarding of DIR/demo with its setup.json (installs, builds,
# starts the five services under DIR/demo/pm2).
demo_onboard() {
  "$1/livinity-agent" demo --dir "$1/demo" >"$1/demo.log" 2>&1 || { cat "$1/demo.log" >&2; return 1; }
}

# metrics_url DIR: the agent's /metrics URL from DIR's setup.json.
metrics_url() {
  python3 -c 'import json,sys; print("http://%s/metrics" % json.load(open(sys.argv[1]))["agent"]["metrics"]["listen"])' "$1/demo/setup.json"
}

# agent_start DIR: starts `livinity-agent run` (it finds the box onboarded with this very
# config and adopts the services), writes its pid to DIR/agent.pid and waits until
# `status` says all five services are ready (at most 120 s).
agent_start() {
  local dir=$1 pid deadline LV_CMD
  lv_cmd "$dir"
  "${LV_CMD[@]}" run >"$dir/agent.log" 2>&1 & # not through lv: $! must be the agent
  pid=$!
  echo "$pid" >"$dir/agent.pid"
  deadline=$((SECONDS + 120))
  until lv "$dir" status >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "the agent exited:" >&2; cat "$dir/agent.log" >&2; return 1; fi
    if [ "$SECONDS" -ge "$deadline" ]; then echo "not all services ready after 120 s:" >&2; lv "$dir" status >&2 || true; return 1; fi
    sleep 0.5
  done
}

# agent_pid DIR: the pid of DIR's agent.
agent_pid() { cat "$1/agent.pid"; }

# env_down DIR: stops DIR's agent (SIGTERM, then SIGKILL after 10 s) and kills its PM2
# daemon with everything PM2 runs there. Safe to call on a half-built environment.
env_down() {
  local dir=$1 pid
  if [ -f "$dir/agent.pid" ]; then
    pid=$(cat "$dir/agent.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then
        echo "the agent $pid did not stop within 10 s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  fi
  if [ -d "$dir/demo/pm2" ]; then PM2_HOME="$dir/demo/pm2" pm2 kill >/dev/null 2>&1 || true; fi
}

# cpu_ticks PID: utime+stime of PID in clock ticks (the fields after the comm field).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# rss_kb PID: VmRSS of PID in kB.
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

# sample_footprint SECONDS LABEL=PID...: samples each process's VmRSS every second for
# SECONDS seconds and reads its CPU ticks at the start and the end of that window; prints
# one line per process, "LABEL max_kB avg_kB cpu_seconds window_seconds samples".
# Fails if a process goes away during the window.
sample_footprint() {
  local secs=$1; shift
  local -a labels=() pids=() c0=() max=() sum=()
  local arg i kb n=0 t0 t1 hz
  hz=$(getconf CLK_TCK)
  for arg in "$@"; do labels+=("${arg%%=*}"); pids+=("${arg#*=}"); done
  t0=$(date +%s.%N)
  for i in "${!pids[@]}"; do c0[i]=$(cpu_ticks "${pids[i]}"); max[i]=0; sum[i]=0; done
  for _ in $(seq "$secs"); do
    sleep 1
    for i in "${!pids[@]}"; do
      kb=$(rss_kb "${pids[i]}" 2>/dev/null) || { echo "${labels[i]} (pid ${pids[i]}) went away during the measurement" >&2; return 1; }
      sum[i]=$((sum[i] + kb)); [ "$kb" -gt "${max[i]}" ] && max[i]=$kb
    done
    n=$((n + 1))
  done
  t1=$(date +%s.%N)
  for i in "${!pids[@]}"; do
    awk -v l="${labels[i]}" -v m="${max[i]}" -v s="${sum[i]}" -v n="$n" -v c="$(($(cpu_ticks "${pids[i]}") - c0[i]))" \
      -v hz="$hz" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%s %d %.0f %.2f %.1f %d\n", l, m, s/n, c/hz, t1-t0, n}'
  done
}
