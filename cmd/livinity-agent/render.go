package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/livinity/livinity-agent/pipeline"
	"github.com/livinity/livinity-agent/setup"
	"golang.org/x/term"
)

// printHealth writes the health check of every service as a table.
func printHealth(w io.Writer, hs []setup.HealthResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCHECK\tHEALTHY\tAFTER\tLATENCY\tDETAIL")
	for _, h := range hs {
		ok := "no"
		switch {
		case h.OK:
			ok = "yes"
		case h.Skipped:
			ok = "skipped"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Service, h.Probe, ok,
			h.After.Round(10*time.Millisecond), h.Latency.Round(100*time.Microsecond), h.Detail)
	}
	tw.Flush()
}

// printPlan writes a dry run's plan as a table.
func printPlan(w io.Writer, res *pipeline.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTEP\tWOULD\tOPTIONAL\tUNDO")
	for i, s := range res.Steps {
		would := "run"
		if s.Status == pipeline.StatusSkipped {
			would = "skip (unchanged)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%s\n", i+1, s.Step.Title, would, s.Step.Optional, s.Step.Undo)
	}
	tw.Flush()
}

func countHealthy(hs []setup.HealthResult) int {
	n := 0
	for _, h := range hs {
		if h.OK {
			n++
		}
	}
	return n
}

// terminalWidth is the number of columns of the terminal w, or 0 when unknown.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil {
			return cols
		}
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// colorOn reports whether to color what goes to w: a terminal, and no NO_COLOR.
func colorOn(w io.Writer) bool {
	return isTerminal(w) && os.Getenv("NO_COLOR") == ""
}
