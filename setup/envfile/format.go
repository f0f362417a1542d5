package envfile

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Read parses the .env file at path. A missing file is not an error: it yields an empty map,
// as on a first install. Errors name the line, never a value.
func Read(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("read env file %s: %w", path, err)
	}
	return m, nil
}

// Parse decodes .env content with the rules of Node's process.loadEnvFile and the dotenv
// package: blank lines and lines starting with # are skipped; an `export ` prefix is
// dropped; whitespace around the key and an unquoted value is trimmed; an unquoted value
// ends at #; a value in single quotes or backticks is taken literally and may span lines; a
// value in double quotes likewise, except that \n stands for a newline. A later assignment
// of the same key wins. Unlike Node, which silently misreads them, an unterminated quote or
// text after a closing quote is an error naming the line.
func Parse(data []byte) (map[string]string, error) {
	p := parser{s: strings.ReplaceAll(string(data), "\r\n", "\n"), line: 1}
	m := map[string]string{}
	for {
		key, value, ok, err := p.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return m, nil
		}
		m[key] = value
	}
}

type parser struct {
	s    string
	pos  int
	line int
}

func (p *parser) skipBlanks() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

// skipLine moves past the rest of the current line, newline included.
func (p *parser) skipLine() {
	if i := strings.IndexByte(p.s[p.pos:], '\n'); i >= 0 {
		p.pos += i + 1
		p.line++
		return
	}
	p.pos = len(p.s)
}

// next returns the next assignment; ok is false at the end of the input.
func (p *parser) next() (key, value string, ok bool, err error) {
	for {
		p.skipBlanks()
		if p.pos >= len(p.s) {
			return "", "", false, nil
		}
		if c := p.s[p.pos]; c == '\n' || c == '#' {
			p.skipLine()
			continue
		}
		break
	}
	line := p.line
	if rest := p.s[p.pos:]; strings.HasPrefix(rest, "export") && len(rest) > 6 && (rest[6] == ' ' || rest[6] == '\t') {
		p.pos += 6
		p.skipBlanks()
	}
	start := p.pos
	for p.pos < len(p.s) && isKeyByte(p.s[p.pos]) {
		p.pos++
	}
	key = p.s[start:p.pos]
	if key == "" {
		return "", "", false, fmt.Errorf("line %d: expected KEY=VALUE with a key of letters, digits, _, . or -", line)
	}
	p.skipBlanks()
	if p.pos >= len(p.s) || p.s[p.pos] != '=' {
		return "", "", false, fmt.Errorf("line %d: expected '=' after %s", line, key)
	}
	p.pos++
	p.skipBlanks()
	if p.pos < len(p.s) {
		if q := p.s[p.pos]; q == '\'' || q == '"' || q == '`' {
			end := strings.IndexByte(p.s[p.pos+1:], q)
			if end < 0 {
				return "", "", false, fmt.Errorf("line %d: %s: unterminated %c quote", line, key, q)
			}
			value = p.s[p.pos+1 : p.pos+1+end]
			p.line += strings.Count(value, "\n")
			p.pos += end + 2
			if q == '"' {
				value = strings.ReplaceAll(value, `\n`, "\n")
			}
			p.skipBlanks()
			if p.pos < len(p.s) && p.s[p.pos] != '\n' && p.s[p.pos] != '#' {
				return "", "", false, fmt.Errorf("line %d: %s: unexpected text after the closing %c quote", p.line, key, q)
			}
			p.skipLine()
			return key, value, true, nil
		}
	}
	end := strings.IndexAny(p.s[p.pos:], "#\n")
	if end < 0 {
		end = len(p.s) - p.pos
	}
	value = strings.TrimRight(p.s[p.pos:p.pos+end], " \t")
	p.pos += end
	p.skipLine()
	return key, value, true, nil
}

func isKeyByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}

// isPlain reports whether v can be written without quotes: every reader takes such a value
// as it stands.
func isPlain(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_-.,/:@+=%~^", c) >= 0) {
			return false
		}
	}
	return true
}

// encode returns v as it is written after KEY=. It picks the first form that Node's
// process.loadEnvFile, the dotenv package and python-dotenv all read back exactly: bare,
// 'single quoted', or "double quoted" with newlines as \n. Values those cannot carry (a
// backslash, ${ which python-dotenv expands, or both kinds of quote) get the first form
// that Node's readers and Parse read exactly, down to `backticks`. A value holding ', " and
// ` together, a carriage return or a NUL byte has no such form and is an error.
func encode(v string) (string, error) {
	if strings.ContainsAny(v, "\r\x00") {
		return "", errors.New("the value contains a carriage return or NUL byte, which a .env file cannot hold")
	}
	if isPlain(v) {
		return v, nil
	}
	noBackslash := !strings.Contains(v, `\`)
	pyExact := noBackslash && !strings.Contains(v, "${")
	single := !strings.ContainsAny(v, "'\n")
	double := !strings.Contains(v, `"`) && noBackslash
	switch {
	case single && pyExact:
		return "'" + v + "'", nil
	case double && pyExact:
		return `"` + strings.ReplaceAll(v, "\n", `\n`) + `"`, nil
	case single:
		return "'" + v + "'", nil
	case double:
		return `"` + strings.ReplaceAll(v, "\n", `\n`) + `"`, nil
	case !strings.Contains(v, "`"):
		return "`" + v + "`", nil
	}
	return "", errors.New("the value contains ', \" and ` together, which no .env quoting can hold")
}
