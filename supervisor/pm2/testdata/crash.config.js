// The crashing app, given up on (errored) after two unstable restarts. min_uptime is long
// so that every restart counts as unstable however slow the machine is.
module.exports = {
  apps: [{ name: 'crash', script: './crash.js', max_restarts: 2, min_uptime: 60000 }],
};
