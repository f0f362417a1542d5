#!/usr/bin/env python3
"""nexus-memory: serves GET /health on 127.0.0.1:$MEMORY_PORT (standard library only).

Runs with the nexus base directory as working directory and reads ./.env if present;
variables already in the environment win.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def load_env_file(path):
    """Sets KEY=VALUE pairs from path into os.environ unless already set."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        value = value.strip()
        if len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]:
            value = value[1:-1]
        os.environ.setdefault(key, value)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = json.dumps({"status": "ok", "service": "nexus-memory"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
        else:
            body = b"not found\n"
            self.send_response(404)
            self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


def main():
    try:
        load_env_file(os.path.join(os.getcwd(), ".env"))
    except OSError as e:
        print(f"nexus-memory: read .env: {e}", file=sys.stderr)
        return 1
    raw = os.environ.get("MEMORY_PORT", "")
    if not raw:
        print("nexus-memory: MEMORY_PORT is not set: set it to the port to listen on (1-65535)",
              file=sys.stderr)
        return 1
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        print(f"nexus-memory: MEMORY_PORT={raw!r} is not a port number: use 1-65535",
              file=sys.stderr)
        return 1
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as e:
        print(f"nexus-memory: serve on 127.0.0.1:{port}: {e}", file=sys.stderr)
        return 1
    server.daemon_threads = True

    stopping = threading.Event()

    def on_signal(signum, _frame):
        print(f"nexus-memory: {signal.Signals(signum).name} received, stopping", flush=True)
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    serving = threading.Thread(target=server.serve_forever, name="serve")
    serving.start()
    print(f"nexus-memory: listening on http://127.0.0.1:{port}", flush=True)
    stopping.wait()
    server.shutdown()
    serving.join()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
