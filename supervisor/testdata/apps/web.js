// A test service: serves GET / and GET /health on 127.0.0.1:$PORT.
//   CRASH_AT_START=1  exit 3 at once (a service that crashes at start forever)
//   LEAK_CHILD_MB=N   spawn a child that grows by N MiB every 100 ms (memory outside the
//                     main pid, where PM2's monit.memory does not look)
const http = require("node:http");
const { spawn } = require("node:child_process");

if (process.env.CRASH_AT_START === "1") {
  console.error("crashing at start");
  process.exit(3);
}
const port = Number(process.env.PORT);
// "/" and "/health" answer 200 (the catalog probes livos on "/", the others on a health path)
const ok = (url) => url === "/health" || url === "/";
const server = http.createServer((req, res) => {
  res.writeHead(ok(req.url) ? 200 : 404, { "content-type": "text/plain" });
  res.end(ok(req.url) ? "ok\n" : "not found\n");
});
server.listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
if (process.env.LEAK_CHILD_MB) {
  const step = Number(process.env.LEAK_CHILD_MB);
  const child = spawn(process.execPath, ["-e", `
    const hold = [];
    setInterval(() => { const b = Buffer.alloc(${step} * 1024 * 1024, 1); hold.push(b); }, 100);
  `], { stdio: "ignore" });
  process.on("exit", () => child.kill("SIGKILL"));
}
const stop = () => server.close(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
