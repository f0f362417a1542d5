// livinityd: the LivOS daemon of the demo tree. Run it as the real tree's ecosystem file
// does: working directory packages/livinityd, interpreter tsx (a dependency of this
// package: packages/livinityd/node_modules/.bin/tsx), script source/cli.ts:
//
//	node_modules/.bin/tsx source/cli.ts --data-directory <dir> --port <n>
//
// It serves the built UI (GET /, read through the packages/livinityd/ui symlink to
// ../ui/dist) and GET /health on 127.0.0.1, and writes a state file into the data directory
// (a relative --data-directory is taken from the working directory). Every other path is
// relative to this file, so it also runs from another working directory.
//
// It imports @livos/config from that package's built dist/ and @nexus/core/lib from the
// dist/ of the copy of nexus core that pnpm made at install time
// (node_modules/.pnpm/@nexus+core@file+..+nexus+packages+core/node_modules/@nexus/core):
// until core is built and its dist/ copied there, it fails at start with
// ERR_MODULE_NOT_FOUND.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { healthPath, productName, stateFileName } from "@livos/config";
import { coreVersion } from "@nexus/core/lib";

function fail(message: string): never {
	console.error(`livinityd: ${message}`);
	process.exit(1);
}

let values: { "data-directory"?: string; port?: string };
try {
	({ values } = parseArgs({
		options: {
			"data-directory": { type: "string" },
			port: { type: "string" },
		},
	}));
} catch (err) {
	fail(`${(err as Error).message}; usage: cli.ts --data-directory <dir> --port <n>`);
}

const dataDirectory = values["data-directory"];
if (!dataDirectory) {
	fail("--data-directory is required: pass the directory livinityd keeps its state in");
}
const port = Number(values.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
	fail(`--port ${JSON.stringify(values.port ?? "")} is not a port number: pass 1-65535`);
}

// Relative to this file, not to the working directory.
const indexHTML = fileURLToPath(new URL("../ui/index.html", import.meta.url));

const dataDir = resolve(dataDirectory);
mkdirSync(dataDir, { recursive: true });
const state = { pid: process.pid, port, startedAt: new Date().toISOString() };
writeFileSync(join(dataDir, stateFileName), JSON.stringify(state) + "\n");

const server = createServer((req, res) => {
	if (req.method === "GET" && req.url === healthPath) {
		res.writeHead(200, { "content-type": "application/json" });
		res.end(JSON.stringify({ status: "ok", service: "livinityd", product: productName, nexusCore: coreVersion }));
		return;
	}
	if (req.method === "GET" && (req.url === "/" || req.url === "/index.html")) {
		let page: Buffer;
		try {
			page = readFileSync(indexHTML);
		} catch (err) {
			res.writeHead(503, { "content-type": "text/plain" });
			res.end(`ui not built: ${(err as Error).message}\n`);
			return;
		}
		res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
		res.end(page);
		return;
	}
	res.writeHead(404, { "content-type": "text/plain" });
	res.end("not found\n");
});

server.on("error", (err) => fail(`serve on 127.0.0.1:${port}: ${err.message}`));
server.listen(port, "127.0.0.1", () => {
	console.log(`livinityd: ${productName} listening on http://127.0.0.1:${port}, data in ${dataDir}`);
});

function stop(signal: string) {
	console.log(`livinityd: ${signal} received, stopping`);
	server.close(() => process.exit(0));
	server.closeAllConnections();
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
