package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/livinity/livinity-agent/config"
	"github.com/livinity/livinity-agent/internal/testenv"
	"github.com/livinity/livinity-agent/setup/envfile"
)

// Keys as a terminal sends them.
const (
	keyEnter     = "\r"
	keyDown      = "\x1b[B"
	keyClearLine = "\x15" // ctrl+u: delete to the start of the input
)

// Answers typed in the tests; the tokens have the shapes config.Validate accepts.
const (
	telegramToken = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawq"
	deepgramKey   = "dg_8f3a9c2e41b7d6a0f5e3c1b9a7d4e2f0"
	cartesiaKey   = "sk_car_Xq7pL2mN9vR4tY6wZ1bC3dF5"
	discordToken  = "MTA4NjY5OTk5OTk5OTk5OTk5OQ.GaBcDe.hIjKlMnOpQrStUvWxYz0123456789abcdEfGh"
	discordAppID  = "1086699999999999999"
	gmailClientID = "123456789012-abcdefghijklmnop.apps.googleusercontent.com"
	gmailSecret   = "GOCSPX-Zx8wVu7tSr6qPo5nMl4kJi3h"
)

// screen is the smallest terminal that can replay what the form writes: printable text,
// CR, LF, cursor moves and erases (other sequences, like colours and modes, are skipped).
// It keeps every byte too, to check what was ever sent to the terminal.
type screen struct {
	mu         sync.Mutex
	rows, cols int
	cells      [][]rune
	r, c       int // cursor; c == cols means "wrap before the next character"
	pending    []byte
	raw        bytes.Buffer
	changed    chan struct{} // closed and replaced on every write
}

func newScreen(rows, cols int) *screen {
	s := &screen{rows: rows, cols: cols, changed: make(chan struct{})}
	s.cells = make([][]rune, rows)
	for i := range s.cells {
		s.cells[i] = blankRow(cols)
	}
	return s
}

func blankRow(cols int) []rune {
	return []rune(strings.Repeat(" ", cols))
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.raw.Write(p)
	s.pending = append(s.pending, p...)
	for len(s.pending) > 0 {
		n := s.step(s.pending)
		if n == 0 {
			break // an incomplete sequence: wait for the rest
		}
		s.pending = s.pending[n:]
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

// step interprets the start of b and says how many bytes it used (0: incomplete).
func (s *screen) step(b []byte) int {
	switch b[0] {
	case '\r':
		s.c = 0
		return 1
	case '\n':
		s.lineFeed()
		return 1
	case '\b':
		s.c = max(0, min(s.c, s.cols-1)-1)
		return 1
	case 0x1b:
		if len(b) < 2 {
			return 0
		}
		switch b[1] {
		case '[':
			for i := 2; i < len(b); i++ {
				if b[i] >= 0x40 && b[i] <= 0x7e {
					s.csi(string(b[2:i]), b[i])
					return i + 1
				}
			}
			return 0
		case ']': // OSC, ended by BEL or ESC \
			for i := 2; i < len(b); i++ {
				if b[i] == 0x07 {
					return i + 1
				}
				if b[i] == 0x1b && i+1 < len(b) && b[i+1] == '\\' {
					return i + 2
				}
			}
			return 0
		default:
			return 2
		}
	}
	if b[0] < 0x20 || b[0] == 0x7f {
		return 1
	}
	if !utf8.FullRune(b) {
		return 0
	}
	r, size := utf8.DecodeRune(b)
	if s.c >= s.cols {
		s.c = 0
		s.lineFeed()
	}
	s.cells[s.r][s.c] = r
	s.c++
	return size
}

func (s *screen) lineFeed() {
	if s.r < s.rows-1 {
		s.r++
		return
	}
	s.cells = append(s.cells[1:], blankRow(s.cols))
}

// csi carries out the control sequences bubbletea's renderer uses.
func (s *screen) csi(params string, final byte) {
	if strings.HasPrefix(params, "?") {
		return // private modes: cursor visibility, bracketed paste, ...
	}
	var n []int
	for _, p := range strings.Split(params, ";") {
		v, _ := strconv.Atoi(p)
		n = append(n, v)
	}
	arg := func(i, def int) int {
		if i < len(n) && n[i] > 0 {
			return n[i]
		}
		return def
	}
	s.c = min(s.c, s.cols-1)
	switch final {
	case 'A':
		s.r = max(0, s.r-arg(0, 1))
	case 'B':
		s.r = min(s.rows-1, s.r+arg(0, 1))
	case 'C':
		s.c = min(s.cols-1, s.c+arg(0, 1))
	case 'D':
		s.c = max(0, s.c-arg(0, 1))
	case 'H', 'f':
		s.r = min(s.rows, arg(0, 1)) - 1
		s.c = min(s.cols, arg(1, 1)) - 1
	case 'K':
		from, to := s.c, s.cols
		switch arg(0, 0) {
		case 1:
			from, to = 0, s.c+1
		case 2:
			from = 0
		}
		for i := from; i < to; i++ {
			s.cells[s.r][i] = ' '
		}
	case 'J':
		switch arg(0, 0) {
		case 0:
			for i := s.c; i < s.cols; i++ {
				s.cells[s.r][i] = ' '
			}
			for r := s.r + 1; r < s.rows; r++ {
				s.cells[r] = blankRow(s.cols)
			}
		case 2, 3:
			for r := range s.cells {
				s.cells[r] = blankRow(s.cols)
			}
		}
	}
}

// text is the screen as lines, trailing spaces and empty lines removed.
func (s *screen) text() string {
	lines := make([]string, len(s.cells))
	for i, row := range s.cells {
		lines[i] = strings.TrimRight(string(row), " ")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n")
}

// wizardRun is one run of the wizard on a pseudo-terminal, driven by a test.
type wizardRun struct {
	t      *testing.T
	master *os.File
	screen *screen
	cancel context.CancelFunc
	done   chan struct{}
	cfg    *config.Config
	err    error
}

const (
	termRows = 40
	termCols = 200 // wide enough that no error message wraps
)

// startPTY opens a pseudo-terminal of the given size (nil: left unset, so it reports 0x0,
// and the screen is the wizard's fallback size) and copies everything written to its tty
// side into a screen. Everything is closed when the test ends.
func startPTY(t *testing.T, size *pty.Winsize) (master, tty *os.File, scr *screen) {
	t.Helper()
	master, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	scr = newScreen(fallbackRows, fallbackCols)
	if size != nil {
		if err := pty.Setsize(master, size); err != nil {
			t.Fatalf("set the terminal size: %v", err)
		}
		scr = newScreen(int(size.Rows), int(size.Cols))
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			scr.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		tty.Close()
		master.Close()
		<-copied
	})
	return master, tty, scr
}

// startRun runs run with the tty side of a new pseudo-terminal of the given size (see
// startPTY). When the test ends, run's context is cancelled and run is waited for.
func startRun(t *testing.T, size *pty.Winsize, run func(ctx context.Context, tty *os.File) (*config.Config, error)) *wizardRun {
	t.Helper()
	master, tty, scr := startPTY(t, size)
	ctx, cancel := context.WithCancel(context.Background())
	w := &wizardRun{t: t, master: master, screen: scr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.cfg, w.err = run(ctx, tty)
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// startWizard runs runWizard on a new pseudo-terminal of termRows x termCols.
func startWizard(t *testing.T) *wizardRun {
	return startRun(t, &pty.Winsize{Rows: termRows, Cols: termCols}, func(ctx context.Context, tty *os.File) (*config.Config, error) {
		return runWizard(ctx, tty, tty)
	})
}

// startWizardCommand runs the wizard command on a new pseudo-terminal; args[0] is the program.
func startWizardCommand(t *testing.T, args ...string) *wizardRun {
	return startRun(t, &pty.Winsize{Rows: termRows, Cols: termCols}, func(ctx context.Context, tty *os.File) (*config.Config, error) {
		cmd := wizardCommand()
		cmd.Reader, cmd.Writer = tty, tty
		return nil, cmd.Run(ctx, args)
	})
}

// send types keys on the terminal.
func (w *wizardRun) send(keys ...string) {
	w.t.Helper()
	if _, err := w.master.Write([]byte(strings.Join(keys, ""))); err != nil {
		w.t.Fatalf("type %q: %v", keys, err)
	}
}

// waitScreen waits until cond holds for the screen, and returns the screen.
func waitScreen(t *testing.T, scr *screen, what string, cond func(string) bool) string {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		scr.mu.Lock()
		text, changed := scr.text(), scr.changed
		scr.mu.Unlock()
		if cond(text) {
			return text
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("waited 10s for %s; the screen shows:\n%s", what, text)
		}
	}
}

// focused says whether the field titled title has the focus: huh draws a thick bar on the
// left of the focused field only.
func focused(text, title string) bool {
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, " "), "┃ "+title) {
			return true
		}
	}
	return false
}

// waitFocus waits until the field titled title has the focus.
func (w *wizardRun) waitFocus(title string) string {
	w.t.Helper()
	return waitScreen(w.t, w.screen, "the focus on "+strconv.Quote(title), func(s string) bool { return focused(s, title) })
}

// waitText waits until the screen shows text.
func (w *wizardRun) waitText(text string) string {
	w.t.Helper()
	return waitScreen(w.t, w.screen, strconv.Quote(text)+" on the screen", func(s string) bool { return strings.Contains(s, text) })
}

// answer waits for the focus on title, then types keys.
func (w *wizardRun) answer(title string, keys ...string) {
	w.t.Helper()
	w.waitFocus(title)
	w.send(keys...)
}

// result waits for the run to return.
func (w *wizardRun) result() (*config.Config, error) {
	w.t.Helper()
	select {
	case <-w.done:
		return w.cfg, w.err
	case <-time.After(10 * time.Second):
		w.screen.mu.Lock()
		text := w.screen.text()
		w.screen.mu.Unlock()
		w.t.Fatalf("the wizard did not return within 10s; the screen shows:\n%s", text)
		return nil, nil
	}
}

// typeSecret types secret into the field titled title, waits until the field shows it,
// masked, and moves on.
func (w *wizardRun) typeSecret(title, secret string) {
	w.t.Helper()
	w.answer(title, secret)
	w.waitText("> " + strings.Repeat("*", utf8.RuneCountInString(secret)))
	w.send(keyEnter)
}

// keepPorts accepts the pre-filled ports from mcp on, then the pre-filled install paths.
func (w *wizardRun) keepPorts() {
	w.t.Helper()
	for _, p := range portPaths[1:] {
		w.answer(p.title, keyEnter)
	}
	w.keepPaths()
}

// keepPaths accepts the pre-filled install paths.
func (w *wizardRun) keepPaths() {
	w.t.Helper()
	for _, p := range treePaths {
		w.answer(p.title, keyEnter)
	}
}

// validationError is the text config.Validate gives for path in c.
func validationError(t *testing.T, c *config.Config, path string) string {
	t.Helper()
	for _, e := range fieldErrors(c.Validate()) {
		if e.Path == path {
			return e.Error()
		}
	}
	t.Fatalf("config.Validate reports nothing at %s", path)
	return ""
}

func mustParse(t *testing.T, json string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(json))
	if err != nil {
		t.Fatalf("parse the expected setup.json: %v\n%s", err, json)
	}
	return c
}

// assertSameEnv checks that both configs give the same .env, secrets drawn from the same
// bytes.
func assertSameEnv(t *testing.T, got, want *config.Config) *envfile.Env {
	t.Helper()
	random := bytes.Repeat([]byte("livinity-agent wizard test bytes"), 16)
	gotEnv, err := envfile.Build(got, nil, false, bytes.NewReader(random))
	if err != nil {
		t.Fatalf("envfile.Build of the wizard's config: %v", err)
	}
	wantEnv, err := envfile.Build(want, nil, false, bytes.NewReader(random))
	if err != nil {
		t.Fatalf("envfile.Build of the parsed file: %v", err)
	}
	if !reflect.DeepEqual(gotEnv.Keys(), wantEnv.Keys()) {
		t.Errorf(".env keys differ:\nwizard: %v\nfile:   %v", gotEnv.Keys(), wantEnv.Keys())
	}
	if !bytes.Equal(gotEnv.Bytes(), wantEnv.Bytes()) {
		t.Errorf(".env contents differ")
	}
	return gotEnv
}

func TestWizardAnswersMakeTheSameConfigAsTheFile(t *testing.T) {
	apiPort := testenv.FreePort(t)
	w := startWizard(t)

	w.answer("Domain", "home.example.com", keyEnter)
	w.answer("Use HTTPS?", "y")
	w.answer("Configure Telegram?", "y")
	w.answer("Telegram bot token", telegramToken, keyEnter)
	w.answer("Who may message the bot?", keyEnter) // pre-selected: pairing
	w.answer("Configure Discord?", "n")
	w.answer("Configure voice?", "y")
	w.answer("Deepgram API key", deepgramKey, keyEnter)
	w.answer("Cartesia API key", cartesiaKey, keyEnter)
	w.answer("Configure Gmail?", "n")
	w.answer(portPaths[0].title, keyClearLine, strconv.Itoa(apiPort), keyEnter)
	w.keepPorts()

	got, err := w.result()
	if err != nil {
		t.Fatalf("runWizard: %v", err)
	}
	want := mustParse(t, `{
		"domain": "home.example.com",
		"useHttps": true,
		"telegram": {"botToken": "`+telegramToken+`", "dmPolicy": "pairing"},
		"voice": {"deepgramApiKey": "`+deepgramKey+`", "cartesiaApiKey": "`+cartesiaKey+`"},
		"ports": {"api": `+strconv.Itoa(apiPort)+`}
	}`)
	if !reflect.DeepEqual(got, want) {
		gotJSON, _ := got.MarshalIndent()
		wantJSON, _ := want.MarshalIndent()
		t.Fatalf("the wizard's config differs from the file's:\nwizard: %s\nfile:   %s", gotJSON, wantJSON)
	}
	if got.Discord != nil || got.Gmail != nil {
		t.Errorf("skipped sections are set: discord %v, gmail %v", got.Discord, got.Gmail)
	}
	env := assertSameEnv(t, got, want)
	if env.Get(envfile.KeyTelegramToken) != telegramToken || env.Get(envfile.KeyAPIPort) != strconv.Itoa(apiPort) ||
		env.Get(envfile.KeyUseHTTPS) != "true" || env.Get(envfile.KeyDiscordToken) != "" {
		t.Errorf("the .env does not carry the answers:\n%s", env.Bytes())
	}
}

func TestWizardRejectsInvalidAnswersUntilFixed(t *testing.T) {
	w := startWizard(t)

	badDomain := config.Default()
	badDomain.Domain = "bad domain!"
	domainErr := validationError(t, badDomain, "domain")
	w.answer("Domain", "bad domain!", keyEnter)
	screen := w.waitText(domainErr)
	if !focused(screen, "Domain") || strings.Contains(screen, "Use HTTPS?") {
		t.Fatalf("the wizard moved on past an invalid domain:\n%s", screen)
	}
	w.send(keyClearLine, "home.example.com", keyEnter)
	screen = w.waitFocus("Use HTTPS?")
	if strings.Contains(screen, domainErr) {
		t.Errorf("the domain error is still shown after the fix:\n%s", screen)
	}
	w.send("n")

	badToken := config.Default()
	badToken.Domain = "localhost"
	badToken.Telegram = &config.Telegram{BotToken: "12345:short", DMPolicy: "pairing"}
	tokenErr := validationError(t, badToken, "telegram.botToken")
	w.answer("Configure Telegram?", "y")
	w.answer("Telegram bot token", "12345:short", keyEnter)
	screen = w.waitText(tokenErr)
	if !focused(screen, "Telegram bot token") || focused(screen, "Who may message the bot?") {
		t.Fatalf("the wizard moved on past an invalid token:\n%s", screen)
	}
	w.send(keyClearLine, telegramToken, keyEnter)
	screen = w.waitFocus("Who may message the bot?")
	if strings.Contains(screen, tokenErr) {
		t.Errorf("the token error is still shown after the fix:\n%s", screen)
	}
	w.send(keyDown, keyEnter) // open
	w.answer("Configure Discord?", "n")
	w.answer("Configure voice?", "n")
	w.answer("Configure Gmail?", "n")

	// Not a number: the one check the wizard makes itself, as setup.json's type check would.
	w.answer(portPaths[0].title, keyClearLine, "abc", keyEnter)
	screen = w.waitText(`ports.api: "abc" is not a whole number; want a number from 1 to 65535`)
	if !focused(screen, portPaths[0].title) {
		t.Fatalf("the wizard moved on past a port that is not a number:\n%s", screen)
	}
	// A port another one already uses: config reports it at the later key.
	dup := config.Default()
	dup.Domain = "localhost"
	dup.Ports.API = dup.Ports.MCP
	dupErr := validationError(t, dup, "ports.mcp")
	w.answer(portPaths[0].title, keyClearLine, strconv.Itoa(dup.Ports.MCP), keyEnter)
	screen = w.waitText(dupErr)
	if !focused(screen, portPaths[0].title) {
		t.Fatalf("the wizard moved on past a port in use:\n%s", screen)
	}
	w.send(keyClearLine, strconv.Itoa(config.Default().Ports.API), keyEnter)
	w.keepPorts()

	got, err := w.result()
	if err != nil {
		t.Fatalf("runWizard: %v", err)
	}
	want := mustParse(t, `{"domain": "home.example.com", "telegram": {"botToken": "`+telegramToken+`", "dmPolicy": "open"}}`)
	if !reflect.DeepEqual(got, want) {
		gotJSON, _ := got.MarshalIndent()
		t.Fatalf("the wizard's config differs from the file's:\n%s", gotJSON)
	}
	assertSameEnv(t, got, want)
}

func TestWizardDoesNotEchoSecrets(t *testing.T) {
	w := startWizard(t)
	w.answer("Domain", "localhost", keyEnter) // no HTTPS question for localhost
	w.answer("Configure Telegram?", "y")
	w.typeSecret("Telegram bot token", telegramToken)
	w.answer("Who may message the bot?", keyEnter)
	w.answer("Configure Discord?", "y")
	w.typeSecret("Discord bot token", discordToken)
	w.answer("Discord application ID", discordAppID)
	w.waitText("> " + discordAppID) // a field that is not secret shows what is typed
	w.send(keyEnter)
	w.answer("Configure voice?", "n")
	w.answer("Configure Gmail?", "y")
	w.answer("Gmail OAuth client ID", gmailClientID, keyEnter)
	w.typeSecret("Gmail OAuth client secret", gmailSecret)
	w.answer(portPaths[0].title, keyEnter)
	w.keepPorts()

	got, err := w.result()
	if err != nil {
		t.Fatalf("runWizard: %v", err)
	}
	if got.UseHTTPS || got.Telegram.BotToken != telegramToken || got.Discord.BotToken != discordToken ||
		got.Discord.ApplicationID != discordAppID || got.Gmail.ClientID != gmailClientID || got.Gmail.ClientSecret != gmailSecret {
		gotJSON, _ := got.MarshalIndent()
		t.Fatalf("the wizard's config does not hold the answers:\n%s", gotJSON)
	}
	w.screen.mu.Lock()
	raw := w.screen.raw.String()
	w.screen.mu.Unlock()
	for _, secret := range []string{telegramToken, discordToken, gmailSecret} {
		// The secrets' tails: nothing of them may reach the terminal.
		tail := secret[len(secret)-12:]
		if strings.Contains(raw, tail) {
			t.Errorf("the terminal was sent part of a secret (%s)", config.Mask(secret))
		}
	}
	if !strings.Contains(raw, discordAppID) {
		t.Errorf("the terminal never showed the Discord application ID, so the check above proves nothing")
	}
}

func TestWizardCommandWritesSetupJSON(t *testing.T) {
	out := filepath.Join(t.TempDir(), "etc", "setup.json")
	t.Setenv("LIVINITY_WIZARD_OUTPUT", out)
	w := startWizardCommand(t, "livinity-agent-wizard")

	w.answer("Domain", "localhost", keyEnter)
	for _, q := range []string{"Configure Telegram?", "Configure Discord?", "Configure voice?", "Configure Gmail?"} {
		w.answer(q, "n")
	}
	w.answer(portPaths[0].title, keyEnter)
	w.keepPorts()
	if _, err := w.result(); err != nil {
		t.Fatalf("wizard command: %v", err)
	}
	w.waitText("Wrote " + out)

	fi, err := os.Stat(out)
	if err != nil {
		t.Fatalf("the wizard wrote no file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("setup.json has mode %v; want 0600", fi.Mode().Perm())
	}
	got, err := config.Load(out)
	if err != nil {
		t.Fatalf("load the written setup.json: %v", err)
	}
	if want := mustParse(t, `{"domain": "localhost"}`); !reflect.DeepEqual(got, want) {
		data, _ := os.ReadFile(out)
		t.Errorf("the written setup.json is not the defaults with domain localhost:\n%s", data)
	}
}

func TestWizardCommandNeedsATerminal(t *testing.T) {
	out := filepath.Join(t.TempDir(), "setup.json")
	var stdout bytes.Buffer
	cmd := wizardCommand()
	cmd.Reader, cmd.Writer = strings.NewReader(""), &stdout
	err := cmd.Run(context.Background(), []string{"livinity-agent-wizard", "--output", out})
	if err == nil || !strings.Contains(err.Error(), "deploy/examples/setup.json") {
		t.Fatalf("without a terminal: got error %v; want one pointing to deploy/examples/setup.json", err)
	}
	if _, statErr := os.Stat(out); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("a file was written without a terminal: %v", statErr)
	}
}

func TestWizardCommandCtrlCWritesNothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "setup.json")
	w := startWizardCommand(t, "livinity-agent-wizard", "--output", out)
	w.answer("Domain", "home.example.com", keyEnter)
	w.answer("Use HTTPS?", "\x03") // ctrl+c
	if _, err := w.result(); !errors.Is(err, errWizardAborted) {
		t.Fatalf("after ctrl+c: got error %v; want %v", err, errWizardAborted)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was written after ctrl+c: %v", err)
	}
}

func TestWizardStopsWithItsContext(t *testing.T) {
	w := startWizard(t)
	w.waitFocus("Domain")
	w.cancel()
	if _, err := w.result(); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: got error %v; want context.Canceled", err)
	}
}

func TestWizardWorksOnATerminalWithoutASize(t *testing.T) {
	w := startRun(t, nil, func(ctx context.Context, tty *os.File) (*config.Config, error) {
		return runWizard(ctx, tty, tty)
	})
	w.answer("Domain", "localhost", keyEnter)
	for _, q := range []string{"Configure Telegram?", "Configure Discord?", "Configure voice?", "Configure Gmail?"} {
		w.answer(q, "n")
	}
	w.answer(portPaths[0].title, keyEnter)
	w.keepPorts()
	got, err := w.result()
	if err != nil {
		t.Fatalf("runWizard on a 0x0 terminal: %v", err)
	}
	if want := mustParse(t, `{"domain": "localhost"}`); !reflect.DeepEqual(got, want) {
		t.Errorf("the wizard's config is not the defaults with domain localhost")
	}
}

// TestWizardAsksForInstallPaths: the two install paths are asked with the defaults filled
// in (Enter keeps them, TestWizardAnswersMakeTheSameConfigAsTheFile), each explained in one
// line; a path setup.json would refuse is refused until fixed.
func TestWizardAsksForInstallPaths(t *testing.T) {
	d := config.Default()
	w := startWizard(t)
	w.answer("Domain", "localhost", keyEnter)
	for _, q := range []string{"Configure Telegram?", "Configure Discord?", "Configure voice?", "Configure Gmail?"} {
		w.answer(q, "n")
	}
	for _, p := range portPaths {
		w.answer(p.title, keyEnter)
	}

	screen := w.waitFocus(treePaths[0].title)
	for _, want := range []string{"> " + d.Paths.LivosBaseDir, "The directory holding the LivOS checkout", "Enter keeps " + d.Paths.LivosBaseDir} {
		if !strings.Contains(screen, want) {
			t.Errorf("the LivOS tree question does not show %q:\n%s", want, screen)
		}
	}
	w.send(keyClearLine, "/srv/livos", keyEnter)
	screen = w.waitFocus(treePaths[1].title)
	if !strings.Contains(screen, "> "+d.Paths.NexusBaseDir) || !strings.Contains(screen, "The directory holding the Nexus checkout") {
		t.Errorf("the Nexus tree question does not show its default and its line:\n%s", screen)
	}
	w.send(keyClearLine, "/srv/livos/nexus", keyEnter)
	w.waitText("is inside paths.livosBaseDir")
	w.send(keyClearLine, "/srv/nexus", keyEnter)

	got, err := w.result()
	if err != nil {
		t.Fatalf("runWizard: %v", err)
	}
	if got.Paths != (config.Paths{LivosBaseDir: "/srv/livos", NexusBaseDir: "/srv/nexus"}) {
		t.Errorf("paths = %+v; want the answers", got.Paths)
	}
	for _, q := range append(portPaths[:], treePaths[:]...) {
		if q.about == "" || strings.Contains(q.about, "\n") {
			t.Errorf("%s is not explained in one line: %q", q.title, q.about)
		}
	}
}
