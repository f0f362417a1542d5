// Package agent is the agent's lifecycle: what the commands run, onboard, setup, install and
// update do, apart from reading flags and drawing on a terminal (package main does both).
//
// # One way into the pipeline
//
// New resolves a box from its config and Options: the LivOS recipe (setup.Box), its
// pipeline plan and the secrets kept out of every log line. Agent.Onboard is the one
// onboarding: it runs the preflight, finishes an interrupted update, runs the pipeline,
// records the run in the box's history and keeps the config for the next run. onboard,
// setup and demo call it once (Onboard); run calls it whenever the box needs onboarding
// (Run); install runs the same Preflight before it writes the units (the agent it starts
// then onboards through Run); update builds its release from the same Agent
// (Agent.Update).
//
// # When run onboards, and how it retries
//
// Run onboards when the box was never onboarded, when the config changed since the last
// successful run, or when the last run failed; otherwise it adopts the running services
// and runs no preflight (a Redis still starting at boot must not hold up supervision). An
// interrupted pipeline run or update is finished first, always.
//
// After an onboarding it ran has succeeded, the command's run starts afresh
// (RunOptions.StartAfresh): it closes the status socket and /metrics and execs the program
// again with the same arguments, the same pid, so that systemd's unit, its watchdog and
// its journal go on. The new process finds the box onboarded, adopts the services and
// supervises them without what the onboarding left in memory (the heap it grew, the
// program pages the pipeline's code was read into: 0.7 MB of the daemon's resident set).
//
// A failed onboarding — a critical preflight check or a pipeline that failed and was
// rolled back — never ends run. It is logged (the preflight check by check, as onboard
// logs it), shown in the status (setup.ok false with the error, which install stops
// following at) and in the metrics (livinity_setup_last_run_success 0), and tried again
// after 1 minute, then doubling up to 30 minutes, for ever. A failed preflight takes the same
// policy as a failed pipeline: what it finds missing (Node.js too old, no Redis, no system
// bus, a port held by another program, a full disk) is fixed on the box while the agent
// waits, and the next attempt picks the fix up without a restart. A failed preflight
// changed nothing, so it is not recorded in the history. After the first failure the agent
// tells systemd it is up, so that status and metrics can be read.
//
// Package agent never writes to a terminal: progress reaches the caller through Hooks and
// Say functions, and renders there.
package agent
