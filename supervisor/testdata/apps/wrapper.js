// A test wrapper like tsx: it runs the real service (web.js) as a child process and does
// not listen itself. Killed with SIGKILL, it leaves the child behind, holding the port.
const { spawn } = require("node:child_process");
const child = spawn(process.execPath, [require("node:path").join(__dirname, "web.js")], { stdio: "inherit" });
const forward = (sig) => () => child.kill(sig);
process.on("SIGINT", forward("SIGINT"));
process.on("SIGTERM", forward("SIGTERM"));
child.on("exit", (code) => process.exit(code ?? 1));
