// nexus-worker: no port; a timer loop that logs a line every WORKER_INTERVAL_MS
// milliseconds (default 5000).
import { loadEnvFile } from "./env.js";
import { installLeakHook } from "./fault.js";

function fail(message: string): never {
	console.error(`nexus-worker: ${message}`);
	process.exit(1);
}

try {
	loadEnvFile();
} catch (err) {
	fail((err as Error).message);
}
const raw = process.env.WORKER_INTERVAL_MS ?? "5000";
const interval = Number(raw);
if (!Number.isInteger(interval) || interval < 10) {
	fail(`WORKER_INTERVAL_MS=${JSON.stringify(raw)} is not a whole number of milliseconds >= 10`);
}

installLeakHook("nexus-worker"); // before the start line: a signal after it finds the hook
let ticks = 0;
console.log(`nexus-worker: started, ticking every ${interval} ms`);
const timer = setInterval(() => {
	ticks++;
	console.log(`nexus-worker: tick ${ticks}`);
}, interval);

function stop(signal: string) {
	console.log(`nexus-worker: ${signal} received, stopping after ${ticks} ticks`);
	clearInterval(timer);
	process.exit(0);
}
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));
