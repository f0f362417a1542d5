package pm2

import (
	"encoding/json"
	"reflect"
	"strings"
)

// decodeLenient decodes the JSON object data into the struct *dst field by field, so that
// one value of an unexpected type (PM2 copies an app's environment variables over its own
// fields: an app with exit_code=boom in its environment reports "exit_code":"boom") loses
// that field, not the whole reply. Nested structs are decoded the same way. It returns the
// dotted paths of the fields left at their zero value because their value did not fit,
// and ok false when data is not a JSON object at all.
func decodeLenient(data []byte, dst any) (bad []string, ok bool) {
	return lenientStruct(data, reflect.ValueOf(dst).Elem(), "")
}

func lenientStruct(data []byte, v reflect.Value, prefix string) ([]string, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return nil, false
	}
	var bad []string
	t := v.Type()
	for i := range t.NumField() {
		key, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		raw, present := obj[key]
		if key == "" || key == "-" || !present {
			continue
		}
		f := v.Field(i)
		if f.Kind() == reflect.Struct {
			inner, ok := lenientStruct(raw, f, prefix+key+".")
			bad = append(bad, inner...)
			if !ok && string(raw) != "null" {
				bad = append(bad, prefix+key)
			}
			continue
		}
		if json.Unmarshal(raw, f.Addr().Interface()) != nil {
			f.SetZero()
			bad = append(bad, prefix+key)
		}
	}
	return bad, true
}
