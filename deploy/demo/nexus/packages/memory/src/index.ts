// nexus-memory: serves GET /health and GET /stats on 127.0.0.1:$MEMORY_PORT (default 3300).
//
// Like the real memory service it reads process.env only, never a .env file: it expects
// the tree's .env values in its environment (upstream runs it with systemd
// EnvironmentFile=). In particular:
//   - LIV_API_KEY: when set, GET /stats requires the header X-API-Key with this value
//     (401 otherwise); when unset, authentication is DISABLED and /stats answers anyone.
//   - MEMORY_DATA_DIR: where it keeps memory-state.json (default /opt/nexus/data/memory,
//     created if missing, whatever the working directory).
import { mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join, resolve } from "node:path";

import { installLeakHook } from "./fault.js";

function fail(message: string): never {
	console.error(`nexus-memory: ${message}`);
	process.exit(1);
}

const rawPort = process.env.MEMORY_PORT || "3300";
const port = Number(rawPort);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
	fail(`MEMORY_PORT=${JSON.stringify(rawPort)} is not a port number: use 1-65535`);
}

const apiKey = process.env.LIV_API_KEY || "";
const dataDir = resolve(process.env.MEMORY_DATA_DIR || "/opt/nexus/data/memory");
// The demo holds no memories; the count is what /stats reports.
const memories = 0;
try {
	mkdirSync(dataDir, { recursive: true });
	const state = { pid: process.pid, port, memories, startedAt: new Date().toISOString() };
	writeFileSync(join(dataDir, "memory-state.json"), JSON.stringify(state) + "\n");
} catch (err) {
	fail(`write memory-state.json in MEMORY_DATA_DIR=${JSON.stringify(dataDir)}: ${(err as Error).message}`);
}

function authorized(header: string | string[] | undefined): boolean {
	if (apiKey === "") return true; // as upstream: no key configured, no authentication
	return typeof header === "string" && header === apiKey;
}

const server = createServer((req, res) => {
	if (req.method === "GET" && req.url === "/health") {
		res.writeHead(200, { "content-type": "application/json" });
		res.end(JSON.stringify({ status: "ok" }));
		return;
	}
	if (req.method === "GET" && req.url === "/stats") {
		if (!authorized(req.headers["x-api-key"])) {
			res.writeHead(401, { "content-type": "application/json" });
			res.end(JSON.stringify({ error: "unauthorized" }));
			return;
		}
		res.writeHead(200, { "content-type": "application/json" });
		res.end(JSON.stringify({ memories }));
		return;
	}
	res.writeHead(404, { "content-type": "text/plain" });
	res.end("not found\n");
});
server.on("error", (err) => fail(`serve on 127.0.0.1:${port}: ${err.message}`));
server.listen(port, "127.0.0.1", () => {
	console.log(`nexus-memory: listening on http://127.0.0.1:${port}, data in ${dataDir}`);
	if (apiKey === "") {
		console.log("nexus-memory: LIV_API_KEY is not set: authentication is disabled");
	}
});

function stop(signal: string) {
	console.log(`nexus-memory: ${signal} received, stopping`);
	server.close(() => process.exit(0));
	server.closeAllConnections();
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
installLeakHook("nexus-memory");
