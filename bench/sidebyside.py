"""Side-by-side measurements of the agent and a PM2 Prometheus exporter (pm2-metrics),
run by bench/compare.sh against a running demo environment (the agent and the exporter
beside the same PM2 daemon). Standard library only.

  crash   kill -9 of a service N times; for each kill, the time until the agent's /metrics
          and the exporter's /metrics show it, each polled every 50 ms
  memory  a service's whole process tree: its PSS from /proc (the truth) against what the
          agent (status --json, /metrics), PM2 (jlist monit.memory) and the exporter report

The agent's status command is given after `--`, e.g. `... crash -- livinity-agent --config
... status --json`. Nothing here asserts figures; it fails only when a measurement cannot
be taken (a kill never shows, an endpoint never answers).
"""

import argparse
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
MIB = 1 << 20


def scrape(url, timeout=5.0):
    """GETs a Prometheus text page; returns [(name, {label: value}, float)]."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        text = r.read().decode()
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def values(samples, metric, **labels):
    """The values of the samples of metric whose labels include labels."""
    return [v for n, l, v in samples if n == metric and all(l.get(k) == x for k, x in labels.items())]


def agent_view(samples, service):
    """What the agent's /metrics says of service: (restarts over all reasons, up, ready
    state); up is PM2's status as the agent saw it, the state the agent's own."""
    up = values(samples, "livinity_service_up", service=service)
    ready = values(samples, "livinity_service_state", service=service, state="ready")
    return (sum(values(samples, "livinity_service_restarts_total", service=service)),
            up[0] if up else None, ready[0] if ready else None)


def exporter_view(samples, service):
    """What pm2-metrics' /metrics says of service: (PM2's restart count, up)."""
    restarts = values(samples, "pm2_restarts", name=service)
    up = values(samples, "pm2_up", name=service)
    return (restarts[0] if restarts else None), (up[0] if up else None)


def status(cmd, service):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    for s in doc["services"]:
        if s["name"] == service:
            return s
    raise SystemExit("status --json lists no service %r" % service)


def wait_for(what, timeout, cond, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = cond()
        except Exception as e:  # an endpoint or the status socket not answering yet
            v, last = None, e
        else:
            last = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise SystemExit("gave up waiting %g s for %s (last error: %s)" % (timeout, what, last))
        time.sleep(every)


def pct(samples, q):
    """Nearest-rank percentile."""
    s = sorted(samples)
    i = int(q * len(s) + 0.999999) - 1
    return s[max(0, min(i, len(s) - 1))]


def summary(ms):
    return "p50 %.1f ms, p99 %.1f ms, max %.1f ms (n=%d)" % (pct(ms, 0.5), pct(ms, 0.99), max(ms), len(ms))


class Watcher(threading.Thread):
    """Polls url every `every` seconds (the next poll starts `every` after the previous one
    started, or at once if it took longer), like a scraper running all along, until
    changed(samples) is true or timeout seconds have passed. The kill happens while it
    runs, at a random moment of its cycle; the latency is from the kill to the end of the
    first poll that shows the change."""

    def __init__(self, url, changed, every, timeout):
        super().__init__(daemon=True)
        self.url, self.changed, self.every, self.timeout = url, changed, every, timeout
        self.seen, self.errors, self.poll_seconds = None, 0, []

    def run(self):
        begin = time.monotonic()
        while time.monotonic() - begin < self.timeout:
            start = time.monotonic()
            try:
                samples = scrape(self.url)
            except Exception:
                self.errors += 1
                samples = None
            end = time.monotonic()
            self.poll_seconds.append(end - start)
            if samples is not None and self.changed(samples):
                self.seen = end
                return
            time.sleep(max(0.0, self.every - (time.monotonic() - start)))


def crash(args):
    svc, cmd = args.service, args.status_cmd
    agent_ms, exp_ms, agent_poll, exp_poll = [], [], [], []
    errors = 0
    last_pid = 0
    for i in range(1, args.kills + 1):
        # the same settling as supervisor/bench_test.go: a new instance, ready, up 1.5 s
        # (PM2 counts a faster crash as unstable), and both endpoints showing it up
        s = wait_for("kill %d: %s ready with a new pid, up 2 s" % (i, svc), 60, lambda: (
            lambda s: s if s["state"] == "ready" and s["ready"] and s["pid"] not in (0, last_pid)
            and s["uptimeSeconds"] >= 2 else None)(status(cmd, svc)), every=0.2)
        a0, _, _ = agent_view(scrape(args.agent), svc)
        e0, _ = wait_for("kill %d: the exporter showing %s up" % (i, svc), 30,
                           lambda: (lambda v: v if v[0] is not None and v[1] == 1 else None)(exporter_view(scrape(args.exporter), svc)))
        pid = s["pid"]
        # shown: a restart counted, PM2 not online, or the agent's state no longer ready
        aw = Watcher(args.agent, lambda m: (lambda r, up, ready: r > a0 or up == 0 or ready == 0)(*agent_view(m, svc)), args.every, 15)
        # shown: PM2's restart count up, or not online
        ew = Watcher(args.exporter, lambda m: (lambda r, up: r is not None and (r > e0 or up == 0))(*exporter_view(m, svc)), args.every, 15)
        aw.start(), ew.start()
        time.sleep(random.uniform(2, 3) * args.every)  # both cycles under way, the kill at a random phase
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        aw.join(), ew.join()
        if aw.seen is None or ew.seen is None:
            raise SystemExit("kill %d of %s (pid %d): not seen within 15 s: agent %s, exporter %s" % (
                i, svc, pid, aw.seen, ew.seen))
        agent_ms.append((aw.seen - t0) * 1e3)
        exp_ms.append((ew.seen - t0) * 1e3)
        agent_poll += aw.poll_seconds
        exp_poll += ew.poll_seconds
        errors += aw.errors + ew.errors
        last_pid = pid
    print("kill -9 -> shown on /metrics (polled every %.0f ms), %d kills of %s:" % (args.every * 1e3, args.kills, svc))
    print("  agent     /metrics: %s; one scrape takes %.1f ms (median)" % (summary(agent_ms), statistics.median(agent_poll) * 1e3))
    print("  exporter  /metrics: %s; one scrape takes %.1f ms (median)" % (summary(exp_ms), statistics.median(exp_poll) * 1e3))
    print("  %d scrapes failed" % errors)
    print("RESULT crash_exporter agent_p50=%.1f agent_p99=%.1f exporter_p50=%.1f exporter_p99=%.1f" % (
        pct(agent_ms, 0.5), pct(agent_ms, 0.99), pct(exp_ms, 0.5), pct(exp_ms, 0.99)))


def tree(root):
    """root and all its descendants, from the ppid of every /proc/<pid>/stat."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def rollup(pid, field):
    """A field of /proc/<pid>/smaps_rollup in bytes (0 if the process went away)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory(args):
    svc, cmd = args.service, args.status_cmd
    env = dict(os.environ, PM2_HOME=args.pm2_home)

    def jlist():
        procs = json.loads(subprocess.run([args.pm2, "jlist"], check=True, capture_output=True, text=True, env=env).stdout)
        return next(p for p in procs if p["name"] == svc)

    main = jlist()["pid"]
    # the child fills its buffer at start: wait until the tree holds what it should and
    # its PSS stops changing
    want = args.expect_mib * MIB
    prev = [0]

    def settled():
        now = sum(rollup(p, "Pss") for p in tree(main))
        ok = now >= want and abs(now - prev[0]) < MIB
        prev[0] = now
        return ok
    wait_for("the tree of %s (pid %d) to hold %d MiB, steady" % (svc, main, args.expect_mib), 60, settled, every=1)
    # the agent refreshes a tree's PSS every 10 s (and on a new instance); give it one refresh
    time.sleep(args.settle)
    rounds = []
    for _ in range(args.rounds):
        procs = tree(main)
        truth = sum(rollup(p, "Pss") for p in procs)
        rss = sum(rollup(p, "Rss") for p in procs)
        st = status(cmd, svc)
        agent_metric = values(scrape(args.agent), "livinity_service_memory_bytes", service=svc)
        pm2_mem = jlist()["monit"]["memory"]
        exp_mem = values(scrape(args.exporter), "pm2_memory", name=svc)
        rounds.append((truth, rss, len(procs), st["memoryBytes"], st["memoryKind"],
                       agent_metric[0] if agent_metric else float("nan"), pm2_mem, exp_mem[0] if exp_mem else float("nan")))
        time.sleep(1)
    truth, rss, n, agent, kind, agent_metric, pm2_mem, exp_mem = [statistics.median(c) if not isinstance(c[0], str) else c[0]
                                                                  for c in zip(*rounds)]
    print("memory of %s: main pid %d and a child holding %d MiB; %d processes in the tree (median of %d readings 1 s apart)" % (
        svc, main, args.expect_mib, n, args.rounds))
    print("  %-44s %10s %10s" % ("source", "MiB", "/ truth"))
    for label, v in [("truth: PSS of the tree (/proc smaps_rollup)", truth),
                     ("  (RSS of the tree, for reference)", rss),
                     ("agent: status --json memoryBytes (%s)" % kind, agent),
                     ("agent: livinity_service_memory_bytes", agent_metric),
                     ("PM2: pm2 jlist monit.memory", pm2_mem),
                     ("exporter: pm2_memory", exp_mem)]:
        print("  %-44s %10.1f %10.2f" % (label, v / MIB, v / truth))
    print("RESULT memory truth_mib=%.1f agent=%.2f pm2=%.2f exporter=%.2f" % (
        truth / MIB, agent / truth, pm2_mem / truth, exp_mem / truth))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crash")
    c.add_argument("--agent", required=True, help="the agent's /metrics URL")
    c.add_argument("--exporter", required=True, help="the exporter's /metrics URL")
    c.add_argument("--service", default="nexus-core")
    c.add_argument("--kills", type=int, default=20)
    c.add_argument("--every", type=float, default=0.05, help="poll period in seconds")
    m = sub.add_parser("memory")
    m.add_argument("--agent", required=True)
    m.add_argument("--exporter", required=True)
    m.add_argument("--pm2", required=True, help="the pm2 command")
    m.add_argument("--pm2-home", required=True)
    m.add_argument("--service", default="nexus-worker")
    m.add_argument("--expect-mib", type=int, default=300)
    m.add_argument("--settle", type=float, default=12, help="seconds to let the agent refresh its PSS reading")
    m.add_argument("--rounds", type=int, default=3)
    for s in (c, m):
        s.add_argument("status_cmd", nargs="+", help="the agent's status --json command, after --")
    args = p.parse_args()
    {"crash": crash, "memory": memory}[args.cmd](args)


if __name__ == "__main__":
    main()
