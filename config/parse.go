package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// maxFileBytes bounds what Load reads; a real setup.json is a few KB.
const maxFileBytes = 1 << 20

// Load reads and parses the setup.json at path (see Parse). It only reads: it never
// creates or changes a file. Errors start with "load <path>: "; several problems are
// listed one per line after a count.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("load %s: file is larger than %d bytes; want a setup.json of a few KB", path, maxFileBytes)
	}
	c, err := Parse(data)
	if err != nil {
		if n := len(unjoin(err)); n > 1 {
			return nil, fmt.Errorf("load %s: %d problems:\n%w", path, n, err)
		}
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return c, nil
}

// unjoin lists the errors inside an errors.Join, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Parse decodes setup.json: it starts from Default, rejects JSON syntax errors, data after
// the top-level object, keys that appear twice in one object, unknown keys (matched
// case-sensitively) and values of the wrong JSON type, fills
// telegram.dmPolicy, then runs Validate. A leading UTF-8 byte order mark is ignored.
// Key or type problems are returned all at once as an errors.Join of *FieldError, as are
// Validate's. On error the Config is nil.
func Parse(data []byte) (*Config, error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	tree, errs, err := decodeTree(data)
	if err != nil {
		return nil, err
	}
	checkShape(&errs, "", tree, reflect.TypeFor[Config](), false, "")
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := Default()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		// checkShape has already rejected everything the decoder rejects; this is a
		// safety net that, unlike the decoder's message, cannot show a secret.
		return nil, fmt.Errorf("decode setup.json: the value of %s does not fit the schema", decodeErrorPath(err))
	}
	if c.Telegram != nil && c.Telegram.DMPolicy == "" {
		c.Telegram.DMPolicy = defaultDMPolicy
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeErrorPath names where a json.Decoder error happened, as far as it says.
func decodeErrorPath(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return te.Field
	}
	return "a key"
}

// maxDepth bounds nesting; setup.json needs 6 levels.
const maxDepth = 32

// decodeTree decodes data into maps, slices, strings, bools and json.Numbers, rejecting
// an empty input, bad syntax, too deep nesting and anything after the first value. A key
// that appears twice in one object is a *FieldError (the decoder would silently keep one).
func decodeTree(data []byte) (any, []error, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, nil, errors.New(`setup.json is empty; want an object like {"domain": "localhost"}`)
	}
	// A plain Decode first: its syntax errors point just past the bad byte, consistently.
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, nil, fmt.Errorf("invalid JSON at %s: %s", position(data, se.Offset-1), se.Error())
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, fmt.Errorf("invalid JSON at %s: the file ends inside a value; want every { and [ closed", position(data, int64(len(data))))
		}
		return nil, nil, fmt.Errorf("invalid JSON: %w", err)
	}
	rest := dec.InputOffset()
	rest += int64(len(data[rest:]) - len(bytes.TrimLeft(data[rest:], " \t\r\n")))
	if rest < int64(len(data)) {
		return nil, nil, fmt.Errorf("invalid JSON at %s: unexpected data after the top-level object; want a single object", position(data, rest))
	}
	tokens := json.NewDecoder(bytes.NewReader(raw))
	tokens.UseNumber()
	var dups []error
	tree, err := readValue(tokens, "", 0, &dups)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid JSON: %w", err)
	}
	return tree, dups, nil
}

// readValue reads one JSON value from dec's token stream.
func readValue(dec *json.Decoder, path string, depth int, dups *[]error) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return tok, nil // string, json.Number, bool or nil
	}
	if depth == maxDepth {
		return nil, fmt.Errorf("nested more than %d levels deep; setup.json needs 6", maxDepth)
	}
	if delim == '[' {
		arr := []any{}
		for dec.More() {
			v, err := readValue(dec, path, depth+1, dups)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := dec.Token() // ]
		return arr, err
	}
	obj := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key := tok.(string) // the decoder only returns strings in key position
		v, err := readValue(dec, child(path, key), depth+1, dups)
		if err != nil {
			return nil, err
		}
		if _, dup := obj[key]; dup {
			*dups = append(*dups, &FieldError{Path: child(path, key), Problem: "appears more than once", Fix: "keep one"})
		}
		obj[key] = v
	}
	_, err = dec.Token() // }
	return obj, err
}

// position is "line L, column C" (1-based, columns in bytes) of byte offset off in data.
func position(data []byte, off int64) string {
	off = max(0, min(off, int64(len(data))))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := len(before) - bytes.LastIndexByte(before, '\n')
	return fmt.Sprintf("line %d, column %d", line, col)
}

// simpleKey matches keys that are written as ".key" in a path; others are written ["key"].
var simpleKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// child is the path of key inside path.
func child(path, key string) string {
	if !simpleKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// topLevel is how a FieldError names the whole document.
const topLevel = "(top level)"

// portWant is the fix for any port value.
const portWant = "want a number from 1 to 65535"

// checkShape appends a *FieldError for every key of v that type t has no field for and
// for every value whose JSON type does not fit t. secret masks the value; want, if set,
// replaces the fix derived from t. A null is always accepted: it leaves the default.
func checkShape(errs *[]error, path string, v any, t reflect.Type, secret bool, want string) {
	if v == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	wrong := func(problem, fix string) {
		if want != "" {
			fix = want
		}
		p := path
		if p == "" {
			p = topLevel
		}
		*errs = append(*errs, &FieldError{Path: p, Value: show(v, secret), Problem: problem, Fix: fix})
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			fix := "want an object"
			if path == "" {
				fix = `want an object like {"domain": "localhost"}`
			}
			wrong(jsonType(v), fix)
			return
		}
		if t.Kind() == reflect.Map {
			for _, k := range sortedKeys(obj) {
				checkShape(errs, child(path, k), obj[k], t.Elem(), false, "")
			}
			return
		}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names = append(names, name)
			if val, ok := obj[name]; ok {
				fieldWant := ""
				if t == reflect.TypeFor[Ports]() || (t == reflect.TypeFor[Probe]() && f.Name == "Port") {
					fieldWant = portWant
				}
				checkShape(errs, child(path, name), val, f.Type, f.Tag.Get("secret") == "true", fieldWant)
			}
		}
		for _, k := range sortedKeys(obj) {
			if !slices.Contains(names, k) {
				*errs = append(*errs, &FieldError{
					Path: child(path, k), Problem: "unknown key",
					Fix: "valid keys here: " + strings.Join(names, ", "),
				})
			}
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			wrong(jsonType(v), "want an array")
			return
		}
		for i, e := range arr {
			checkShape(errs, fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), false, "")
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			wrong(jsonType(v), "want a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			wrong(jsonType(v), "want true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			wrong(jsonType(v), "want a whole number")
			return
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); errors.Is(err, strconv.ErrRange) {
			wrong("is out of range", "want a whole number")
		} else if f, _ := strconv.ParseFloat(string(n), 64); err != nil && f == math.Trunc(f) && math.Abs(f) < 1e15 {
			*errs = append(*errs, &FieldError{Path: path, Value: show(v, secret),
				Problem: "is written with a fraction or exponent", Fix: "want " + num(f)})
		} else if err != nil && f == math.Trunc(f) {
			wrong("is out of range", "want a whole number")
		} else if err != nil {
			wrong("is not a whole number", "want digits only, like 3")
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			wrong(jsonType(v), "want a number")
			return
		}
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			wrong("is out of range", "want a number")
		}
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// jsonType is "is a string", "is a number", ... for a decoded JSON value.
func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "is a string"
	case json.Number:
		return "is a number"
	case bool:
		return "is a boolean"
	case []any:
		return "is an array"
	default:
		return "is an object"
	}
}

// show is a decoded JSON value as an error message shows it; secrets are masked.
func show(v any, secret bool) string {
	switch v := v.(type) {
	case []any:
		return "[...]"
	case map[string]any:
		return "{...}"
	case string:
		if secret {
			return Mask(v)
		}
		return quote(v)
	case json.Number:
		if secret {
			return Mask(string(v))
		}
		if s := string(v); len(s) > maxShown {
			return s[:maxShown-16] + "… (" + strconv.Itoa(len(s)) + " chars)"
		}
		return string(v)
	case bool:
		if secret {
			return Mask(strconv.FormatBool(v))
		}
		return strconv.FormatBool(v)
	}
	return "null"
}
