// Fault hook for the chaos soak (test/chaos), this package's own copy of core's
// packages/core/src/fault.ts: like the real tree, @nexus/worker does not depend on
// @nexus/core. On SIGUSR2 the service starts a child process that leaks memory, so that
// only a supervisor measuring the whole process tree sees it (PM2's own
// max_memory_restart looks at the main pid only).
import { spawn } from "node:child_process";

/** MiB the leaking child adds every 100 ms. */
export const leakMiBPerTick = 8;
/** The child stops growing at this many MiB and keeps holding them. */
export const leakCapMiB = 1024;

// The child: fills (so the pages are resident) leakMiBPerTick MiB every 100 ms up to the
// cap, and exits as soon as its parent, the service, is gone.
const leakChild = `
const [step, cap] = process.argv.slice(1).map(Number);
const parent = process.ppid;
const held = [];
setInterval(() => {
	try { process.kill(parent, 0); } catch { process.exit(0); }
	if (held.length * step < cap) held.push(Buffer.alloc(step * 1048576, 1));
}, 100);
`;

/**
 * Installs the SIGUSR2 hook: the first SIGUSR2 starts the leaking child; later ones are
 * ignored. The service's start line stays the first thing it logs.
 */
export function installLeakHook(service: string): void {
	let leaking = false;
	process.on("SIGUSR2", () => {
		if (leaking) return;
		leaking = true;
		const child = spawn(process.execPath, ["-e", leakChild, String(leakMiBPerTick), String(leakCapMiB)], {
			stdio: "ignore",
		});
		console.log(`${service}: SIGUSR2 received, child ${child.pid} leaks ${leakMiBPerTick} MiB every 100 ms`);
	});
}
