package pm2

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// EventKind names a process:event: "start", "online", "exit", "restart overlimit", or the
// action of a manual notification ("restart", "stop", "delete", ...).
type EventKind string

// Event kinds PM2 emits on its own; manual notifications carry other kinds.
const (
	EventStart            EventKind = "start"
	EventOnline           EventKind = "online"
	EventExit             EventKind = "exit"
	EventRestartOverlimit EventKind = "restart overlimit"
	EventRestart          EventKind = "restart"
	EventStop             EventKind = "stop"
	EventDelete           EventKind = "delete"
	// EventKill is not a process:event: it stands for the bus topic pm2:kill, sent when the
	// daemon is being shut down (pm2 kill). ID is -1 and Name empty.
	EventKill EventKind = "pm2:kill"
)

// Event is one process:event from the bus (or a pm2:kill). Like Process it holds no part of
// the app's environment, which PM2 copies into every event.
type Event struct {
	Kind        EventKind
	Name        string
	ID          int    // pm_id
	Status      Status // the app's status when the event was sent ("launching" for online)
	RestartTime int
	ExitCode    *int // nil until the app's first exit
	// Signal is the signal that ended the app ("SIGKILL"), for an exit; "" when it exited
	// by itself or PM2 did not say. PM2 reports exit code 0 for a process killed by a
	// signal: the signal comes from its log line "App [name:id] exited with code [0] via
	// signal [SIGKILL]", which it publishes on the bus (log:PM2) just before the exit.
	Signal   string
	At       time.Time // when the daemon sent it
	Manually bool      // announced by a client (notifyByProcessId) rather than observed
}

// wireEvent is the decoded subset of a process:event payload.
type wireEvent struct {
	Event    EventKind `json:"event"`
	Manually bool      `json:"manually"`
	At       float64   `json:"at"`
	Process  struct {
		Name        string   `json:"name"`
		PMID        int      `json:"pm_id"`
		Status      Status   `json:"status"`
		RestartTime int      `json:"restart_time"`
		ExitCode    *float64 `json:"exit_code"`
	} `json:"process"`
}

// Subscribe connects to the daemon's bus socket under home ($home/pub.sock) and returns a
// channel of process events. The channel is closed when the connection drops, when the
// bus sends bytes that are not the protocol, or when ctx ends; the owner reconnects if it
// wants to. Events sent while no one was subscribed are lost (the bus has no replay):
// reconcile with Client.List after subscribing. Like Dial, it never starts a daemon and
// returns an error wrapping ErrDaemonNotRunning when none runs.
//
// The caller must keep receiving: the reader blocks while the channel is full.
func Subscribe(ctx context.Context, home string) (<-chan Event, error) {
	conn, _, err := dialUnix(ctx, PubSocket(home))
	if err != nil {
		return nil, err
	}
	ch := make(chan Event, 64)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	go func() {
		defer close(ch)
		defer stop()
		defer conn.Close()
		readBus(ctx, conn, ch)
	}()
	return ch, nil
}

// readBus forwards events from conn until it fails or ctx ends.
func readBus(ctx context.Context, conn net.Conn, ch chan<- Event) {
	dec := newFrameDecoder(conn, MaxBusFrame)
	signals := map[int]string{} // pm_id → the signal of the exit PM2 just logged
	for {
		args, err := dec.next()
		if errors.Is(err, ErrFrameTooLarge) {
			continue // dropped unread (a long log line); the stream is still in step
		}
		if err != nil {
			return
		}
		if id, sig, ok := exitSignal(args); ok {
			signals[id] = sig
			continue
		}
		ev, ok := decodeBusFrame(args)
		if !ok {
			continue
		}
		if ev.Kind == EventExit {
			ev.Signal = signals[ev.ID]
		}
		if ev.Kind == EventExit || ev.Kind == EventOnline {
			delete(signals, ev.ID)
		}
		select {
		case ch <- ev:
		case <-ctx.Done():
			return
		}
	}
}

// decodeBusFrame turns a [s:topic, j:payload] frame into an Event. Other topics (logs,
// app messages) and malformed payloads are skipped.
func decodeBusFrame(args [][]byte) (Event, bool) {
	if len(args) != 2 {
		return Event{}, false
	}
	topic, ok := argString(args[0])
	if !ok {
		return Event{}, false
	}
	switch topic {
	case "process:event":
		payload, ok := argJSON(args[1])
		if !ok {
			return Event{}, false
		}
		var w wireEvent
		if json.Unmarshal(payload, &w) != nil {
			// a field of an unexpected type (the app's environment is copied over the
			// process's fields) costs that field, not the event
			w = wireEvent{}
			bad, ok := decodeLenient(payload, &w)
			if !ok || slices.Contains(bad, "process.pm_id") || slices.Contains(bad, "process.name") {
				return Event{}, false
			}
		}
		if w.Event == "" {
			return Event{}, false
		}
		ev := Event{
			Kind:        w.Event,
			Name:        w.Process.Name,
			ID:          w.Process.PMID,
			Status:      w.Process.Status,
			RestartTime: w.Process.RestartTime,
			At:          epochMillis(w.At),
			Manually:    w.Manually,
		}
		if w.Process.ExitCode != nil {
			c := int(*w.Process.ExitCode)
			ev.ExitCode = &c
		}
		return ev, true
	case "pm2:kill":
		return Event{Kind: EventKill, ID: -1, At: time.Now()}, true
	}
	return Event{}, false
}

// exitLine is PM2's log line for an app's exit (God.handleExit).
var exitLine = regexp.MustCompile(`^App \[.*:(\d+)\] exited with code \[[^\]]*\] via signal \[(SIG[A-Z0-9]+)\]`)

// exitSignal reads a log:PM2 frame announcing an exit by a signal: the app's pm_id and
// the signal's name.
func exitSignal(args [][]byte) (int, string, bool) {
	if len(args) != 2 {
		return 0, "", false
	}
	if topic, ok := argString(args[0]); !ok || topic != "log:PM2" {
		return 0, "", false
	}
	payload, ok := argJSON(args[1])
	if !ok {
		return 0, "", false
	}
	var w struct {
		Data string `json:"data"`
	}
	if json.Unmarshal(payload, &w) != nil {
		return 0, "", false
	}
	m := exitLine.FindStringSubmatch(w.Data)
	if m == nil {
		return 0, "", false
	}
	id, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, "", false
	}
	return id, m[2], true
}
