package preflight

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
)

func portsConfig(t *testing.T, livos int) *config.Config {
	cfg := config.Default()
	cfg.Ports = config.Ports{API: testenv.FreePort(t), MCP: testenv.FreePort(t), Memory: testenv.FreePort(t), Livos: livos}
	return cfg
}

func TestPortsHeldByAnotherProcessFail(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	r := Options{}.checkPorts(portsConfig(t, port))
	want := fmt.Sprintf("%d (ports.livos) is held by pid %d", port, os.Getpid())
	if r.Status != Fail || !r.Critical || !strings.Contains(r.Detail, want) || r.Fix == "" {
		t.Fatalf("result %+v; want a critical failure saying %q", r, want)
	}
	l.Close()
	if r := (Options{}).checkPorts(portsConfig(t, port)); r.Status != OK {
		t.Fatalf("free ports: %+v", r)
	}
}

// TestPortsHeldByThisBoxsPM2AppsPass: on a re-run the ports are held by the box's own
// services, under the PM2 daemon of the configured home.
func TestPortsHeldByThisBoxsPM2AppsPass(t *testing.T) {
	t.Parallel()
	bin := testenv.PM2(t, 7)
	home := testenv.PM2Home(t, bin)
	port := testenv.FreePort(t)
	app := filepath.Join(t.TempDir(), "listen.js")
	os.WriteFile(app, []byte(`require("node:http").createServer((q, s) => s.end("ok")).listen(Number(process.env.PORT), "127.0.0.1");`), 0o644)
	cmd := exec.Command(bin, "start", app, "--name", "livos")
	cmd.Env = append(os.Environ(), "PM2_HOME="+home, "PORT="+strconv.Itoa(port))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pm2 start: %v\n%s", err, out)
	}
	testenv.WaitFor(t, "the app to listen", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	r := Options{PM2Home: home}.checkPorts(portsConfig(t, port))
	if r.Status != OK || !strings.Contains(r.Detail, "held by this box's PM2 apps") {
		t.Fatalf("with the right PM2 home: %+v", r)
	}
	if r := (Options{PM2Home: t.TempDir()}).checkPorts(portsConfig(t, port)); r.Status != Fail {
		t.Fatalf("another PM2 home's app must count as a conflict: %+v", r)
	}
}
