// nexus-mcp: serves GET /health on 127.0.0.1:$MCP_PORT.
import { createServer } from "node:http";

import { loadEnvFile, portFromEnv } from "./env.js";
import { installLeakHook } from "./fault.js";

function fail(message: string): never {
	console.error(`nexus-mcp: ${message}`);
	process.exit(1);
}

let port = 0;
try {
	loadEnvFile();
	port = portFromEnv("MCP_PORT");
} catch (err) {
	fail((err as Error).message);
}

const server = createServer((req, res) => {
	if (req.method === "GET" && req.url === "/health") {
		res.writeHead(200, { "content-type": "application/json" });
		res.end(JSON.stringify({ status: "ok", service: "nexus-mcp" }));
		return;
	}
	res.writeHead(404, { "content-type": "text/plain" });
	res.end("not found\n");
});
server.on("error", (err) => fail(`serve on 127.0.0.1:${port}: ${err.message}`));
server.listen(port, "127.0.0.1", () => {
	console.log(`nexus-mcp: listening on http://127.0.0.1:${port}`);
});

function stop(signal: string) {
	console.log(`nexus-mcp: ${signal} received, stopping`);
	server.close(() => process.exit(0));
	server.closeAllConnections();
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
installLeakHook("nexus-mcp");
