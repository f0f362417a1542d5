// An app that idles until stopped. On SIGINT (PM2's stop signal) it exits after a short
// delay so that a restart takes a moment, which lets tests see replies out of order.
const delay = Number(process.env.LV_STOP_DELAY_MS || 0);
setInterval(() => {}, 1000);
process.on('SIGINT', () => setTimeout(() => process.exit(0), delay));
console.log('idle up', process.pid);
