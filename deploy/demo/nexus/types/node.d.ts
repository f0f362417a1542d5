// The few Node.js APIs the nexus services use, declared here so that the tree needs no
// dependency beyond typescript (no @types/node).

declare module "node:http" {
	interface IncomingMessage {
		method?: string;
		url?: string;
		headers: Record<string, string | string[] | undefined>;
	}
	interface ServerResponse {
		writeHead(status: number, headers?: Record<string, string>): this;
		end(body?: string): this;
	}
	interface Server {
		listen(port: number, host: string, callback?: () => void): this;
		close(callback?: (err?: Error) => void): this;
		closeAllConnections(): void;
		on(event: "error", listener: (err: Error) => void): this;
	}
	function createServer(listener: (req: IncomingMessage, res: ServerResponse) => void): Server;
}

declare module "node:fs" {
	function readFileSync(path: string, encoding: "utf8"): string;
	function writeFileSync(path: string, data: string): void;
	function appendFileSync(path: string, data: string): void;
	function mkdirSync(path: string, options: { recursive: true }): string | undefined;
}

declare module "node:child_process" {
	interface ChildProcess {
		pid?: number;
	}
	function spawn(command: string, args: string[], options: { stdio: "ignore" }): ChildProcess;
}

declare module "node:path" {
	function join(...paths: string[]): string;
	function resolve(...paths: string[]): string;
}

interface NodeTimer {}

declare var process: {
	env: Record<string, string | undefined>;
	execPath: string;
	pid: number;
	cwd(): string;
	exit(code?: number): never;
	on(event: "SIGINT" | "SIGTERM" | "SIGUSR2", listener: () => void): void;
};
declare var console: {
	log(...data: unknown[]): void;
	error(...data: unknown[]): void;
};
declare function setInterval(callback: () => void, ms: number): NodeTimer;
declare function clearInterval(timer: NodeTimer): void;
