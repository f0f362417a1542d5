package metrics

import (
	"encoding/json"
	"net/http"
)

// healthz answers 200 "ok" while the supervision loop is alive, 503 otherwise.
func (m *Metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if m.alive != nil && !m.alive() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("supervision loop not alive\n"))
		return
	}
	w.Write([]byte("ok\n"))
}

// Readiness is the JSON body of /readyz.
type Readiness struct {
	Ready    bool       `json:"ready"`
	NotReady []NotReady `json:"notReady"`
	// PM2Error says why PM2 is not connected (then nothing is ready); omitted when it is.
	PM2Error string `json:"pm2Error,omitempty"`
}

// NotReady names a service that is not ready and why.
type NotReady struct {
	Service string `json:"service"`
	State   string `json:"state"`
	Detail  string `json:"detail,omitempty"`
}

// readyz answers 200 when every service is ready, 503 otherwise, with a Readiness body.
func (m *Metrics) readyz(w http.ResponseWriter, _ *http.Request) {
	snap := m.store.Snapshot()
	body := Readiness{Ready: snap.AllReady(), NotReady: []NotReady{}}
	if !snap.Agent.PM2Connected {
		body.PM2Error = snap.Agent.PM2Error
		if body.PM2Error == "" {
			body.PM2Error = "not connected to the PM2 daemon"
		}
	}
	for _, sv := range snap.Services {
		if !sv.Ready {
			body.NotReady = append(body.NotReady, NotReady{Service: sv.Name, State: string(sv.Phase), Detail: sv.Detail})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !body.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(body)
}
