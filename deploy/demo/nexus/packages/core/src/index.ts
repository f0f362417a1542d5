// nexus-core: serves GET /api/health on 127.0.0.1:$API_PORT. Requires JWT_SECRET in the
// environment or in <cwd>/.env (its value is never printed). Like the real core it appends
// to a log file in $NEXUS_LOGS_DIR (default /opt/nexus/logs, whatever the working
// directory), creating the directory.
import { appendFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";

import { loadEnvFile, portFromEnv } from "./env.js";
import { installLeakHook } from "./fault.js";
import { coreHealthPath, defaultLogsDir, logFileName } from "./lib.js";

function fail(message: string): never {
	console.error(`nexus-core: ${message}`);
	process.exit(1);
}

let port = 0;
try {
	loadEnvFile();
	port = portFromEnv("API_PORT");
} catch (err) {
	fail((err as Error).message);
}
if (!process.env.JWT_SECRET) {
	fail("JWT_SECRET is not set: set it in the environment or in .env in the working directory");
}

const logsDir = process.env.NEXUS_LOGS_DIR || defaultLogsDir;
const logFile = join(logsDir, logFileName);
function logToFile(line: string) {
	appendFileSync(logFile, `${new Date().toISOString()} ${line}\n`);
}
try {
	mkdirSync(logsDir, { recursive: true });
	logToFile(`nexus-core: starting (pid ${process.pid}, port ${port})`);
} catch (err) {
	fail(`write the log file in NEXUS_LOGS_DIR=${JSON.stringify(logsDir)}: ${(err as Error).message}`);
}

const server = createServer((req, res) => {
	if (req.method === "GET" && req.url === coreHealthPath) {
		res.writeHead(200, { "content-type": "application/json" });
		res.end(JSON.stringify({ status: "ok" }));
		return;
	}
	res.writeHead(404, { "content-type": "text/plain" });
	res.end("not found\n");
});
server.on("error", (err) => fail(`serve on 127.0.0.1:${port}: ${err.message}`));
server.listen(port, "127.0.0.1", () => {
	const line = `nexus-core: listening on http://127.0.0.1:${port}, logs in ${logsDir}`;
	console.log(line);
	logToFile(line);
});

function stop(signal: string) {
	console.log(`nexus-core: ${signal} received, stopping`);
	server.close(() => process.exit(0));
	server.closeAllConnections();
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
installLeakHook("nexus-core");
