package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
)

// secret is what a misbehaving service echoes; it must never reach a Detail.
const secret = "sk-live-0123456789abcdef"

// acceptEach hands every connection ln accepts to handle, until ln is closed.
func acceptEach(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
}

// endlessHeaders listens on a port that answers every connection with a status line and
// header lines without end.
func endlessHeaders(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acceptEach(ln, func(c net.Conn) {
		go func() {
			defer c.Close()
			c.Write([]byte("HTTP/1.1 200 OK\r\n"))
			line := []byte("X-Padding: " + strings.Repeat("x", 1000) + "\r\n")
			for {
				if _, err := c.Write(line); err != nil {
					return
				}
			}
		}()
	})
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// checkWithin runs Check with a fresh timeout.
func checkWithin(t *testing.T, timeout time.Duration, s Spec, online OnlineFunc) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Check(ctx, s, online)
}

// serverSpec returns an http Spec aimed at srv.
func serverSpec(t *testing.T, srv *httptest.Server) Spec {
	t.Helper()
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return Spec{Kind: KindHTTP, Host: host, Port: p}
}

// hungListener accepts connections and never answers, like a process stopped with
// SIGSTOP after its accept loop ran. Each accepted connection is announced on the channel.
func hungListener(t *testing.T) (port int, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 100)
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
			ch <- struct{}{}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).Port, ch
}

func TestHTTP(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") != userAgent {
			http.Error(w, "wrong user agent", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "status ok token=%s\n", secret)
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "database down, password="+secret, http.StatusInternalServerError)
	})
	mux.HandleFunc("/created", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/health", http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/slowbody", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", MaxBodyBytes)))
		w.Write([]byte("ok"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { close(release); srv.Close() })
	base := serverSpec(t, srv)
	with := func(f func(*Spec)) Spec { s := base; f(&s); return s }
	hungPort, _ := hungListener(t)
	endless := endlessHeaders(t)

	tests := []struct {
		name       string
		spec       Spec
		timeout    time.Duration
		want       Outcome
		wantDetail string
	}{
		{"200 is success", with(func(s *Spec) { s.Path = "/health" }), 5 * time.Second, Success, "status 200"},
		{"default path and host", Spec{Kind: KindHTTP, Port: base.Port}, 5 * time.Second, Failure, "status 404 Not Found, want 200 OK"},
		{"500 is failure", with(func(s *Spec) { s.Path = "/broken" }), 5 * time.Second, Failure, "status 500 Internal Server Error, want 200 OK"},
		{"expected status other than 200", with(func(s *Spec) { s.Path = "/created"; s.ExpectStatus = 201 }), 5 * time.Second, Success, "status 201"},
		{"200 when 201 expected", with(func(s *Spec) { s.Path = "/health"; s.ExpectStatus = 201 }), 5 * time.Second, Failure, "status 200 OK, want 201 Created"},
		{"redirect is not followed", with(func(s *Spec) { s.Path = "/moved" }), 5 * time.Second, Failure, "status 302 Found, want 200 OK"},
		{"redirect expected", with(func(s *Spec) { s.Path = "/moved"; s.ExpectStatus = 302 }), 5 * time.Second, Success, "status 302"},
		{"body contains", with(func(s *Spec) { s.Path = "/health"; s.BodyContains = "status ok" }), 5 * time.Second, Success, "body contains bodyContains"},
		{"wrong body", with(func(s *Spec) { s.Path = "/health"; s.BodyContains = "ready" }), 5 * time.Second, Failure, "do not contain bodyContains"},
		{"text beyond the body limit", with(func(s *Spec) { s.Path = "/big"; s.BodyContains = "ok" }), 5 * time.Second, Failure,
			fmt.Sprintf("first %d bytes of the body do not contain", MaxBodyBytes)},
		{"slow beyond timeout", with(func(s *Spec) { s.Path = "/slow" }), 300 * time.Millisecond, Failure, "no answer before the deadline"},
		{"body slow beyond timeout", with(func(s *Spec) { s.Path = "/slowbody"; s.BodyContains = "ok" }), 300 * time.Millisecond, Failure,
			"read body: no answer before the deadline"},
		{"closed port", Spec{Kind: KindHTTP, Port: testenv.FreePort(t)}, 5 * time.Second, Failure, "connection refused"},
		{"accepts and never answers", Spec{Kind: KindHTTP, Port: hungPort}, 300 * time.Millisecond, Failure, "no answer before the deadline"},
		{"headers without end", Spec{Kind: KindHTTP, Port: endless}, 5 * time.Second, Failure, "unexpected EOF"},
		{"path without slash", with(func(s *Spec) { s.Path = "health" }), 5 * time.Second, Error, `probe: path "health" must start with "/"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkWithin(t, tt.timeout, tt.spec, nil)
			if r.Outcome != tt.want {
				t.Errorf("outcome = %s (%s), want %s", r.Outcome, r.Detail, tt.want)
			}
			if !strings.Contains(r.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to contain %q", r.Detail, tt.wantDetail)
			}
			if strings.Contains(r.Detail, secret) {
				t.Errorf("detail leaks the response body: %q", r.Detail)
			}
			if r.At.IsZero() || r.Duration <= 0 {
				t.Errorf("result lacks timing: at %v, duration %v", r.At, r.Duration)
			}
		})
	}
}

// TestHTTPKeepsItsConnection: successful checks of an address share one connection, for
// keepFor at most; a failed check closes it, and a connection the server closed is dialed
// again within the same check.
func TestHTTPKeepsItsConnection(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
		w.(http.Flusher).Flush() // chunked, as Node.js answers after writeHead
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusInternalServerError) })
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	health := serverSpec(t, srv)
	health.Path = "/health"
	broken := health
	broken.Path = "/broken"
	dialed := func() int { mu.Lock(); defer mu.Unlock(); return conns }
	check := func(s Spec, want Outcome) {
		t.Helper()
		if r := checkWithin(t, 2*time.Second, s, nil); r.Outcome != want {
			t.Fatalf("%s: %s (%s), want %s", s.Path, r.Outcome, r.Detail, want)
		}
	}
	for range 5 {
		check(health, Success)
	}
	if n := dialed(); n != 1 {
		t.Fatalf("5 successful checks dialed %d connections, want 1", n)
	}
	srv.CloseClientConnections()
	check(health, Success)
	if n := dialed(); n != 2 {
		t.Fatalf("after the server closed the connection: %d connections, want 2", n)
	}
	check(broken, Failure)
	check(health, Success)
	if n := dialed(); n != 3 {
		t.Fatalf("a failed check must close its connection: %d connections, want 3", n)
	}
	old := keepFor
	keepFor = 100 * time.Millisecond
	t.Cleanup(func() { keepFor = old })
	time.Sleep(150 * time.Millisecond)
	check(health, Success)
	if n := dialed(); n != 4 {
		t.Fatalf("a connection older than keepFor was used again: %d connections, want 4", n)
	}
}

// TestHTTPStoppedProcess probes a real HTTP server (python3 -m http.server) before and
// while it is stopped with SIGSTOP: the kernel still completes the TCP handshake, so only
// the deadline reveals the hang.
func TestHTTPStoppedProcess(t *testing.T) {
	testenv.Require(t, "python3")
	port := testenv.FreePort(t)
	cmd := exec.Command("python3", "-m", "http.server", "--bind", "127.0.0.1", strconv.Itoa(port))
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	spec := Spec{Kind: KindHTTP, Port: port}
	waitFor(t, "python http.server to answer", func() bool {
		return checkWithin(t, time.Second, spec, nil).Outcome == Success
	})
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Signal(syscall.SIGCONT)
	r := checkWithin(t, 300*time.Millisecond, spec, nil)
	if r.Outcome != Failure || !strings.Contains(r.Detail, "no answer before the deadline") {
		t.Errorf("http probe of a stopped server = %s (%s), want failure by deadline", r.Outcome, r.Detail)
	}
	// A TCP probe cannot tell: the kernel accepts for the stopped process.
	if r := checkWithin(t, 300*time.Millisecond, Spec{Kind: KindTCP, Port: port}, nil); r.Outcome != Success {
		t.Errorf("tcp probe of a stopped server = %s (%s), want success (kernel-side accept)", r.Outcome, r.Detail)
	}
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := ln.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name       string
		spec       Spec
		want       Outcome
		wantDetail string
	}{
		{"open port", Spec{Kind: KindTCP, Port: open}, Success, fmt.Sprintf("connect 127.0.0.1:%d: connected", open)},
		{"explicit host", Spec{Kind: KindTCP, Host: "127.0.0.1", Port: open}, Success, "connected"},
		{"closed port", Spec{Kind: KindTCP, Port: testenv.FreePort(t)}, Failure, "connection refused"},
		{"unresolvable host", Spec{Kind: KindTCP, Host: "no-such-host.invalid", Port: open}, Error, "probe could not run"},
		{"port zero", Spec{Kind: KindTCP}, Error, "probe: port 0 is out of range: use 1-65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkWithin(t, 5*time.Second, tt.spec, nil)
			if r.Outcome != tt.want {
				t.Errorf("outcome = %s (%s), want %s", r.Outcome, r.Detail, tt.want)
			}
			if !strings.Contains(r.Detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to contain %q", r.Detail, tt.wantDetail)
			}
		})
	}
}

func TestProcess(t *testing.T) {
	tests := []struct {
		name       string
		online     OnlineFunc
		want       Outcome
		wantDetail string
	}{
		{"online", func(context.Context) (bool, error) { return true, nil }, Success, "reports the process online"},
		{"not online", func(context.Context) (bool, error) { return false, nil }, Failure, "does not report the process online"},
		{"pm2 unreachable", func(context.Context) (bool, error) { return false, errors.New("dial rpc.sock: no such file") }, Error,
			"ask process manager: dial rpc.sock: no such file"},
		{"pm2 hangs", func(ctx context.Context) (bool, error) { <-ctx.Done(); return false, ctx.Err() }, Error,
			"ask process manager: context deadline exceeded"},
		{"no online func", nil, Error, "probe: kind process needs an OnlineFunc, got nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkWithin(t, 200*time.Millisecond, Spec{Kind: KindProcess}, tt.online)
			if r.Outcome != tt.want || !strings.Contains(r.Detail, tt.wantDetail) {
				t.Errorf("got %s (%q), want %s containing %q", r.Outcome, r.Detail, tt.want, tt.wantDetail)
			}
		})
	}
}

func TestInvalidSpecIsError(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		wantErr string
	}{
		{"empty kind", Spec{Port: 80}, `probe: kind is empty: set it to "http", "tcp" or "process"`},
		{"unknown kind", Spec{Kind: "grpc", Port: 80}, `probe: kind "grpc" is not supported: use "http", "tcp" or "process"`},
		{"port too big", Spec{Kind: KindHTTP, Port: 70000}, "probe: port 70000 is out of range: use 1-65535"},
		{"host with scheme", Spec{Kind: KindTCP, Host: "http://localhost", Port: 80}, `probe: host "http://localhost" is not a bare host name or IP address: drop scheme, port and path`},
		{"host with port", Spec{Kind: KindTCP, Host: "localhost:8080", Port: 80}, `probe: host "localhost:8080" is not a bare host name or IP address: drop scheme, port and path`},
		{"path for tcp", Spec{Kind: KindTCP, Port: 80, Path: "/x"}, `probe: path "/x" applies only to kind http, not tcp: remove it`},
		{"status for process", Spec{Kind: KindProcess, ExpectStatus: 200}, "probe: expectStatus 200 applies only to kind http, not process: remove it"},
		{"body for tcp", Spec{Kind: KindTCP, Port: 80, BodyContains: "ok"}, "probe: bodyContains applies only to kind http, not tcp: remove it"},
		{"status out of range", Spec{Kind: KindHTTP, Port: 80, ExpectStatus: 42}, "probe: expectStatus 42 is not an http status: use 100-599 (default 200)"},
		{"path with space", Spec{Kind: KindHTTP, Port: 80, Path: "/a b"}, `probe: path "/a b" holds spaces or control characters: percent-encode them`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Validate() = %v, want %q", err, tt.wantErr)
			}
			r := checkWithin(t, time.Second, tt.spec, nil)
			if r.Outcome != Error || r.Detail != tt.wantErr {
				t.Errorf("Check = %s (%q), want error %q", r.Outcome, r.Detail, tt.wantErr)
			}
		})
	}
}

func TestValidSpecs(t *testing.T) {
	for _, s := range []Spec{
		{Kind: KindHTTP, Port: 80},
		{Kind: KindHTTP, Host: "localhost", Port: 8080, Path: "/api/health?full=1", ExpectStatus: 204, BodyContains: "ok"},
		{Kind: KindTCP, Host: "::1", Port: 5432},
		{Kind: KindProcess},
		{Kind: KindProcess, Port: 3000}, // the service's port, filled in generically, is ignored
	} {
		if err := s.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", s, err)
		}
	}
}

func TestContextProblemsAreErrors(t *testing.T) {
	port, accepted := hungListener(t)
	spec := Spec{Kind: KindHTTP, Port: port}

	t.Run("canceled before the check", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cancel()
		r := Check(ctx, spec, nil)
		if r.Outcome != Error || r.Detail != "probe not started: context canceled" {
			t.Errorf("got %s (%q), want error: probe not started", r.Outcome, r.Detail)
		}
	})
	t.Run("no deadline", func(t *testing.T) {
		r := Check(context.Background(), spec, nil)
		if r.Outcome != Error || !strings.Contains(r.Detail, "context has no deadline") {
			t.Errorf("got %s (%q), want error: no deadline", r.Outcome, r.Detail)
		}
	})
	t.Run("canceled during the check/http", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		go func() { <-accepted; cancel() }()
		r := Check(ctx, spec, nil)
		if r.Outcome != Error || !strings.Contains(r.Detail, "probe interrupted: context canceled") {
			t.Errorf("got %s (%q), want error: probe interrupted", r.Outcome, r.Detail)
		}
	})
	t.Run("canceled during the check/tcp", func(t *testing.T) {
		full := fullListener(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		go func() {
			defer cancel()
			for deadline := time.Now().Add(10 * time.Second); !synSent(t, full); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Error("no connect in SYN_SENT within 10s")
					return
				}
			}
		}()
		r := Check(ctx, Spec{Kind: KindTCP, Port: full}, nil)
		if r.Outcome != Error || !strings.Contains(r.Detail, "probe interrupted: context canceled") {
			t.Errorf("got %s (%q), want error: probe interrupted", r.Outcome, r.Detail)
		}
	})
}

// TestTCPUnansweredConnect: a listener whose accept queue is full drops SYNs, so the
// connect hangs until the deadline: a Failure.
func TestTCPUnansweredConnect(t *testing.T) {
	full := fullListener(t)
	r := checkWithin(t, 300*time.Millisecond, Spec{Kind: KindTCP, Port: full}, nil)
	if r.Outcome != Failure || !strings.Contains(r.Detail, "no answer before the deadline") {
		t.Errorf("got %s (%q), want failure by deadline", r.Outcome, r.Detail)
	}
}

// fullListener returns the port of a loopback listener with backlog 0 that never accepts,
// its accept queue filled, so that further SYNs are dropped.
func fullListener(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("the accept queue of a backlog-0 listener never filled")
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break // the queue is full: SYNs are dropped now
		}
		t.Cleanup(func() { c.Close() })
	}
	return port
}

// synSent reports whether /proc/net/tcp shows a connect to port still in SYN_SENT.
func synSent(t *testing.T, port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Error(err)
		return true
	}
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[2], want) && f[3] == "02" {
			return true
		}
	}
	return false
}

// TestResourceExhaustionIsError runs the check in a child process whose file descriptors
// are used up: the dial fails with EMFILE, which says nothing about the service.
func TestResourceExhaustionIsError(t *testing.T) {
	if os.Getenv("PROBE_EMFILE_CHILD") == "1" {
		emfileChild()
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestResourceExhaustionIsError$")
	cmd.Env = append(os.Environ(), "PROBE_EMFILE_CHILD=1", "PROBE_PORT="+strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var got []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			got = append(got, k)
		}
	}
	for _, kind := range []string{KindTCP, KindHTTP} {
		found := false
		for _, g := range got {
			if strings.HasPrefix(g, kind+" ") {
				found = true
				if !strings.HasPrefix(g, kind+" error ") || !strings.Contains(g, "too many open files") {
					t.Errorf("%s check without free descriptors: %s, want error mentioning too many open files", kind, g)
				}
			}
		}
		if !found {
			t.Errorf("child printed no result for %s:\n%s", kind, out)
		}
	}
}

func emfileChild() {
	port, _ := strconv.Atoi(os.Getenv("PROBE_PORT"))
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("getrlimit:", err)
		os.Exit(1)
	}
	lim.Cur = 64
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("setrlimit:", err)
		os.Exit(1)
	}
	var held []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		held = append(held, f)
	}
	var lines []string
	for _, kind := range []string{KindTCP, KindHTTP} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r := Check(ctx, Spec{Kind: kind, Port: port}, nil)
		cancel()
		lines = append(lines, fmt.Sprintf("RESULT %s %s %s", kind, r.Outcome, r.Detail))
	}
	for _, f := range held {
		f.Close()
	}
	for _, l := range lines {
		fmt.Println(l)
	}
}

func TestSanitize(t *testing.T) {
	long := strings.Repeat("a", 1000)
	if got := sanitize(long); len(got) != maxDetail+3 || !strings.HasSuffix(got, "...") {
		t.Errorf("sanitize(1000 bytes) has %d bytes, want %d ending in ...", len(got), maxDetail+3)
	}
	if got, want := sanitize("bad\x1b[31m\nline\u00e9"), "bad?[31m?line?"; got != want {
		t.Errorf("sanitize = %q, want %q", got, want)
	}
}
