package pm2

import (
	"encoding/json"
	"fmt"
	"time"
)

// Status is an app's state as PM2 reports it in pm2_env.status.
type Status string

// The statuses PM2 reports.
const (
	StatusOnline         Status = "online"
	StatusLaunching      Status = "launching"
	StatusStopping       Status = "stopping"
	StatusStopped        Status = "stopped"
	StatusWaitingRestart Status = "waiting restart" // restart delay or backoff pending
	StatusErrored        Status = "errored"         // restart limit reached: PM2 never retries it
	StatusOneLaunch      Status = "one-launch-status"
)

// Process is one app as listed by getMonitorData or pm2 jlist. It holds only the fields a
// supervisor needs: PM2's process object also carries the app's whole environment (twice),
// which is never decoded into this type so that it cannot leak through logs or output.
type Process struct {
	ID               int       // pm_id; PM2 reuses numbers after a delete
	Name             string    // app name
	Namespace        string    // pm2_env.namespace ("default" unless set)
	PID              int       // 0 when stopped or errored; briefly the dead pid after a crash
	Status           Status    // pm2_env.status
	RestartTime      int       // pm2_env.restart_time: all restarts, manual or not
	UnstableRestarts int       // pm2_env.unstable_restarts
	Started          time.Time // pm2_env.pm_uptime: the last start (zero if never started)
	CreatedAt        time.Time // pm2_env.created_at
	ExitCode         *int      // pm2_env.exit_code; nil until the first exit
	MonitMemory      uint64    // monit.memory: RSS in bytes of the main pid only
	MonitCPU         float64   // monit.cpu: percent of one core since the previous sample
	Autorestart      bool      // pm2_env.autorestart
	ExecMode         string    // pm2_env.exec_mode: "fork_mode" or "cluster_mode"
	ExecPath         string    // pm2_env.pm_exec_path: the script
	Cwd              string    // pm2_env.pm_cwd
	Interpreter      string    // pm2_env.exec_interpreter, e.g. "node", "python3", "none"
	OutLogPath       string    // pm2_env.pm_out_log_path
	ErrLogPath       string    // pm2_env.pm_err_log_path
	// Unreadable lists the fields (e.g. "pm2_env.exit_code") whose value had a type PM2
	// does not use for them: they are left at their zero value, and ID is -1 when pm_id
	// is one of them. Nil when every field was read.
	Unreadable []string
}

// wireProcess is the subset of PM2's process object that is decoded. Do not add env,
// args or the top-level copies of environment variables here.
type wireProcess struct {
	PID   int    `json:"pid"`
	Name  string `json:"name"`
	PMID  int    `json:"pm_id"`
	Monit struct {
		Memory float64 `json:"memory"`
		CPU    float64 `json:"cpu"`
	} `json:"monit"`
	Env struct {
		Namespace        string   `json:"namespace"`
		Status           Status   `json:"status"`
		RestartTime      int      `json:"restart_time"`
		UnstableRestarts int      `json:"unstable_restarts"`
		PMUptime         float64  `json:"pm_uptime"`
		CreatedAt        float64  `json:"created_at"`
		ExitCode         *float64 `json:"exit_code"`
		Autorestart      *bool    `json:"autorestart"`
		ExecMode         string   `json:"exec_mode"`
		PMExecPath       string   `json:"pm_exec_path"`
		PMCwd            string   `json:"pm_cwd"`
		ExecInterpreter  string   `json:"exec_interpreter"`
		PMOutLogPath     string   `json:"pm_out_log_path"`
		PMErrLogPath     string   `json:"pm_err_log_path"`
	} `json:"pm2_env"`
}

func (w *wireProcess) process() Process {
	p := Process{
		ID:               w.PMID,
		Name:             w.Name,
		Namespace:        w.Env.Namespace,
		PID:              w.PID,
		Status:           w.Env.Status,
		RestartTime:      w.Env.RestartTime,
		UnstableRestarts: w.Env.UnstableRestarts,
		Started:          epochMillis(w.Env.PMUptime),
		CreatedAt:        epochMillis(w.Env.CreatedAt),
		MonitCPU:         w.Monit.CPU,
		Autorestart:      w.Env.Autorestart == nil || *w.Env.Autorestart, // PM2's default is true
		ExecMode:         w.Env.ExecMode,
		ExecPath:         w.Env.PMExecPath,
		Cwd:              w.Env.PMCwd,
		Interpreter:      w.Env.ExecInterpreter,
		OutLogPath:       w.Env.PMOutLogPath,
		ErrLogPath:       w.Env.PMErrLogPath,
	}
	if w.Monit.Memory > 0 {
		p.MonitMemory = uint64(w.Monit.Memory)
	}
	if w.Env.ExitCode != nil {
		c := int(*w.Env.ExitCode)
		p.ExitCode = &c
	}
	return p
}

// decodeProcesses decodes a getMonitorData result (or pm2 jlist output). A field of an
// unexpected type costs that field only (see Process.Unreadable); what is not a list of
// objects is an error wrapping ErrProtocol.
func decodeProcesses(data []byte) ([]Process, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: decode process list: %w", ErrProtocol, err)
	}
	out := make([]Process, len(raw))
	for i, r := range raw {
		var w wireProcess
		if json.Unmarshal(r, &w) == nil {
			out[i] = w.process()
			continue
		}
		w = wireProcess{}
		bad, ok := decodeLenient(r, &w)
		if !ok {
			return nil, fmt.Errorf("%w: decode process list: entry %d is not an object", ErrProtocol, i)
		}
		out[i] = w.process()
		out[i].Unreadable = bad
		for _, f := range bad {
			if f == "pm_id" {
				out[i].ID = -1 // never act on a guessed id
			}
		}
	}
	return out, nil
}

// epochMillis converts PM2's epoch-millisecond timestamps; 0 stays the zero time.
func epochMillis(ms float64) time.Time {
	if ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}
