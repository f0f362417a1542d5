package preflight

import (
	"fmt"
	"io"
	"strings"
)

const (
	ansiReset  = "\x1b[0m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
	ansiDim    = "\x1b[2m"
)

// Format writes results as a table: status, check name and detail in aligned columns,
// with the fix on the line below each result that is not OK. A failed critical check is
// marked "(critical)". color adds ANSI colours (for a terminal).
func Format(w io.Writer, results []Result, color bool) {
	names := make([]string, len(results))
	width := 0
	for i, r := range results {
		names[i] = r.Name
		if r.Status == Fail && r.Critical {
			names[i] += " (critical)"
		}
		width = max(width, len(names[i]))
	}
	paint := func(code, s string) string {
		if !color {
			return s
		}
		return code + s + ansiReset
	}
	indent := strings.Repeat(" ", 6+width+2)
	for i, r := range results {
		code := ansiRed
		switch r.Status {
		case OK:
			code = ansiGreen
		case Warn:
			code = ansiYellow
		}
		status := fmt.Sprintf("%-4s", r.Status)
		fmt.Fprintf(w, "%s  %-*s  %s\n", paint(code, status), width, names[i], r.Detail)
		if r.Status != OK && r.Fix != "" {
			fmt.Fprintf(w, "%s%s\n", indent, paint(ansiDim, "fix: "+r.Fix))
		}
	}
}
