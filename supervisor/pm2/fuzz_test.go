package pm2

import (
	"testing"
)

// FuzzDecodeProcesses: any getMonitorData result (or jlist output) either decodes or is an
// ErrProtocol error; it never panics, and a pm_id that could not be read is never guessed.
func FuzzDecodeProcesses(f *testing.F) {
	f.Add([]byte(`[{"pid":1,"name":"a","pm_id":0,"monit":{"memory":1,"cpu":0},"pm2_env":{"status":"online","restart_time":0,"pm_uptime":1,"exit_code":0}}]`))
	f.Add([]byte(`[{"name":"a","pm_id":"x","pm2_env":{"exit_code":"boom","autorestart":"yes"}}]`))
	f.Add([]byte(`[{"monit":7,"pm2_env":[]}]`))
	f.Add([]byte(`[1,"a",null]`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		procs, err := decodeProcesses(data)
		if err != nil {
			return
		}
		for _, p := range procs {
			for _, u := range p.Unreadable {
				if u == "pm_id" && p.ID != -1 {
					t.Fatalf("unreadable pm_id decoded as %d", p.ID)
				}
			}
		}
	})
}

// FuzzDecodeResult: any reply body decodes to a result, a RemoteError or an ErrProtocol
// error, without panicking.
func FuzzDecodeResult(f *testing.F) {
	f.Add([]byte(`{"args":[{"msg":"pong"}]}`))
	f.Add([]byte(`{"error":{"message":"x","env":{"SECRET":"y"}}}`))
	f.Add([]byte(`{"args":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var out any
		decodeResult("m", data, &out)
		decodeResult("m", data, nil)
	})
}

// FuzzBusFrame: any [topic, payload] frame is an event, an exit signal or skipped; the
// decoders never panic, and an event never carries an app's name it could not read.
func FuzzBusFrame(f *testing.F) {
	f.Add("s:process:event", `j:{"event":"exit","manually":false,"at":1,"process":{"name":"a","pm_id":0,"status":"online","restart_time":1,"exit_code":0}}`)
	f.Add("s:process:event", `j:{"event":"exit","process":{"name":"a","pm_id":0,"exit_code":"boom"}}`)
	f.Add("s:log:PM2", `j:{"process":{"pm_id":"PM2"},"at":1,"data":"App [a:b:3] exited with code [0] via signal [SIGKILL]\n"}`)
	f.Add("s:pm2:kill", `j:{}`)
	f.Add("x", "y")
	f.Fuzz(func(t *testing.T, topic, payload string) {
		args := [][]byte{[]byte(topic), []byte(payload)}
		if id, sig, ok := exitSignal(args); ok && (id < 0 || sig == "") {
			t.Fatalf("exit signal %d %q", id, sig)
		}
		decodeBusFrame(args)
		decodeBusFrame(args[:1])
	})
}
