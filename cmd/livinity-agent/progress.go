package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/livinity/livinity-agent/pipeline"
)

// progress draws the pipeline on a terminal: a finished line per step, and one live line
// with a spinner, the step counter and elapsed time of what is running. (A small
// hand-written renderer: the terminal libraries at hand show one spinner per action, and
// the pipeline runs several steps at once.)
type progress struct {
	w     io.Writer
	color bool
	width int // the live line is cut to this many columns so that it never wraps

	mu      sync.Mutex
	running map[int]runningStep
	total   int
	frame   int
	stop    chan struct{}
	done    chan struct{}
}

type runningStep struct {
	title string
	since time.Time
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func newProgress(w io.Writer, color bool, width int) *progress {
	if width < 20 {
		width = 80
	}
	p := &progress{w: w, color: color, width: width, running: map[int]runningStep{}, stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *progress) loop() {
	defer close(p.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.mu.Lock()
			p.clearLine()
			p.mu.Unlock()
			return
		case <-t.C:
			p.mu.Lock()
			p.frame++
			p.drawLive()
			p.mu.Unlock()
		}
	}
}

// Close stops the live line.
func (p *progress) Close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// Observe is the pipeline's observer.
func (p *progress) Observe(e pipeline.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = e.Total
	counter := fmt.Sprintf("[%*d/%d]", len(fmt.Sprint(e.Total)), e.Index, e.Total)
	switch e.Status {
	case pipeline.StatusRunning:
		p.running[e.Index] = runningStep{title: e.Step.Title, since: time.Now()}
		p.drawLive()
		return
	case pipeline.StatusPending:
		p.line(" ", "", counter, e.Step.Title, "would run")
	case pipeline.StatusSkipped:
		p.line("–", "2", counter, e.Step.Title, "unchanged, skipped")
	case pipeline.StatusDone:
		p.line("✓", "32", counter, e.Step.Title, e.Elapsed.Round(100*time.Millisecond).String())
	case pipeline.StatusWarned:
		p.line("!", "33", counter, e.Step.Title, "optional step failed, undone: "+firstLine(e.Err))
	case pipeline.StatusFailed:
		p.line("✗", "31", counter, e.Step.Title, "failed after "+e.Elapsed.Round(100*time.Millisecond).String())
	case pipeline.StatusCanceled:
		p.line("·", "2", counter, e.Step.Title, "canceled")
	}
	delete(p.running, e.Index)
	p.drawLive()
}

func (p *progress) paint(code, s string) string {
	if !p.color || code == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p *progress) line(mark, code, counter, title, detail string) {
	p.clearLine()
	fmt.Fprintf(p.w, "%s %s %s  %s\n", p.paint(code, mark), counter, title, p.paint("2", detail))
}

func (p *progress) clearLine() { fmt.Fprint(p.w, "\r\x1b[2K") }

func (p *progress) drawLive() {
	if len(p.running) == 0 {
		p.clearLine()
		return
	}
	idx := make([]int, 0, len(p.running))
	for i := range p.running {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var parts []string
	for _, i := range idx {
		r := p.running[i]
		parts = append(parts, fmt.Sprintf("[%d/%d] %s %s", i, p.total, r.title, time.Since(r.since).Truncate(100*time.Millisecond)))
	}
	line := []rune(strings.Join(parts, " · "))
	if max := p.width - 3; len(line) > max {
		line = append(line[:max-1], '…')
	}
	p.clearLine()
	fmt.Fprintf(p.w, "%s %s", p.paint("36", spinner[p.frame%len(spinner)]), string(line))
}

func firstLine(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}
