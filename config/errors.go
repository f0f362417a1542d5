package config

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FieldError is one problem with one setup.json key. Its text is
// "<Path>: <Value> <Problem>; <Fix>", for example
//
//	ports.mcp: 3200 is already used by ports.api; pick another port
//
// Path is the JSON path ("agent.services.livos.probe.kind", or "(top level)"); Value is
// the bad value as shown to the user (JSON-quoted, shortened if long, masked for secrets;
// empty when the key itself is the problem); Fix says what would be valid.
type FieldError struct {
	Path    string
	Value   string
	Problem string
	Fix     string
}

// Error returns "<Path>: <Value> <Problem>; <Fix>", leaving out the empty parts.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	b.WriteString(": ")
	if e.Value != "" {
		b.WriteString(e.Value)
		b.WriteByte(' ')
	}
	b.WriteString(e.Problem)
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Mask shows a secret without revealing any of its characters: "(secret, 46 chars)".
// The empty string is shown as "".
func Mask(secret string) string {
	if secret == "" {
		return `""`
	}
	return "(secret, " + strconv.Itoa(utf8.RuneCountInString(secret)) + " chars)"
}

// maxShown is how many characters of a value an error message shows before shortening it.
const maxShown = 64

// quote shows a string value JSON-style, shortened to maxShown characters.
func quote(s string) string {
	r := []rune(s)
	if len(r) <= maxShown {
		return strconv.Quote(s)
	}
	return strconv.Quote(string(r[:maxShown-16])+"…") + " (" + strconv.Itoa(len(r)) + " chars)"
}

// num shows a number the way it would be written in JSON.
func num(f float64) string {
	if f == 0 {
		return "0" // not "-0"
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
