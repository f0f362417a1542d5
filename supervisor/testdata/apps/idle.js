// A test worker with no port: it only stays alive.
setInterval(() => {}, 1000);
process.on("SIGINT", () => process.exit(0));
