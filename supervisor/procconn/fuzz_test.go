package procconn

import "testing"

// FuzzParse: the proc connector's datagrams come from the kernel, but the parser reads
// lengths and offsets from them: any bytes give events or none, never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	f.Add([]byte{40, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range parse(b) {
			_ = e.pid
		}
	})
}
