package envfile

import (
	"testing"
)

// FuzzParse: an existing .env is outside input (an operator edits it). Parse never panics,
// and what it reads, written by the agent and parsed again, is the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte("JWT_SECRET=abc\nexport A_FLAG=\"on\"\n# c\nQ='it''s'\nML=\"a\\nb\"\n"))
	f.Add([]byte("K=\"unterminated\nX=1"))
	f.Add([]byte("=novalue\n   \n\tK2 = spaced # comment\nB=`back`\n"))
	f.Add([]byte("\xef\xbb\xbfK=v\r\nL=w\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		for k, v := range m {
			line, err := encode(v)
			if err != nil || !validKey(k) {
				continue // values the writer refuses (it says so) are not round-tripped
			}
			back, err := Parse([]byte(k + "=" + line + "\n"))
			if err != nil {
				t.Fatalf("the agent's own line %q=%q does not parse: %v", k, line, err)
			}
			if back[k] != v {
				t.Fatalf("%s: %q written as %q reads back as %q", k, v, line, back[k])
			}
		}
	})
}
