// Environment loading of nexus-mcp, its own copy (like the real tree, @nexus/mcp-server
// does not depend on @nexus/core). It runs with the nexus base directory as working
// directory and reads ./.env there itself, as the real server does through dotenv/config.
import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Parses env-file text: KEY=VALUE lines, blank lines and # comments skipped, an optional
 * "export " prefix, values optionally wrapped in single or double quotes. Lines without
 * "=" are skipped.
 */
export function parseEnv(text: string): Record<string, string> {
	const out: Record<string, string> = {};
	for (const raw of text.split(/\r?\n/)) {
		const line = raw.trim();
		if (line === "" || line.startsWith("#")) continue;
		const eq = line.indexOf("=");
		if (eq < 1) continue;
		const key = line.slice(0, eq).replace(/^export\s+/, "").trim();
		let value = line.slice(eq + 1).trim();
		const q = value[0];
		if ((q === '"' || q === "'") && value.length >= 2 && value.endsWith(q)) {
			value = value.slice(1, -1);
		} else {
			value = value.replace(/\s+#.*$/, "");
		}
		out[key] = value;
	}
	return out;
}

/**
 * Loads <cwd>/.env if present into process.env; variables already set in the environment
 * win. Returns whether the file was read.
 */
export function loadEnvFile(): boolean {
	const path = join(process.cwd(), ".env");
	let text: string;
	try {
		text = readFileSync(path, "utf8");
	} catch (err) {
		if ((err as { code?: string }).code === "ENOENT") return false;
		throw new Error(`read ${path}: ${(err as Error).message}`);
	}
	for (const [key, value] of Object.entries(parseEnv(text))) {
		if (process.env[key] === undefined) process.env[key] = value;
	}
	return true;
}

/** Returns the TCP port in the named variable, or throws an error that says how to fix it. */
export function portFromEnv(name: string): number {
	const raw = process.env[name];
	if (raw === undefined || raw === "") {
		throw new Error(`${name} is not set: set it to the port to listen on (1-65535)`);
	}
	const port = Number(raw);
	if (!Number.isInteger(port) || port < 1 || port > 65535) {
		throw new Error(`${name}=${JSON.stringify(raw)} is not a port number: use 1-65535`);
	}
	return port;
}
