package pm2

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestAppendFrameLayout(t *testing.T) {
	got, err := appendFrame(nil, []byte("s:ab"), []byte{})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x12, 0, 0, 0, 4, 's', ':', 'a', 'b', 0, 0, 0, 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("frame = % x, want % x", got, want)
	}
}

func TestAppendFrameRejectsBadArgc(t *testing.T) {
	if _, err := appendFrame(nil); err == nil {
		t.Error("appendFrame with no arguments: no error")
	}
	if _, err := appendFrame(nil, make([][]byte, 16)...); err == nil {
		t.Error("appendFrame with 16 arguments: no error")
	}
}

// TestDecoderSplitAndCoalesced feeds several frames in one stream, read one byte at a time
// and all at once, and expects the same frames back.
func TestDecoderSplitAndCoalesced(t *testing.T) {
	frames := [][][]byte{
		{[]byte(`j:{"type":"call","method":"ping","args":[{}]}`), []byte("s:1:1")},
		{[]byte("s:process:event"), []byte(`j:{"event":"exit"}`)},
		{[]byte{}},
		{bytes.Repeat([]byte("x"), 70000), []byte("raw"), []byte("s:")},
	}
	var stream []byte
	for _, f := range frames {
		var err error
		if stream, err = appendFrame(stream, f...); err != nil {
			t.Fatal(err)
		}
	}
	readers := map[string]io.Reader{
		"coalesced":  bytes.NewReader(stream),
		"one byte":   iotest.OneByteReader(bytes.NewReader(stream)),
		"half split": iotest.HalfReader(bytes.NewReader(stream)),
	}
	for name, r := range readers {
		t.Run(name, func(t *testing.T) {
			d := newFrameDecoder(r, MaxReplyFrame)
			for i, want := range frames {
				got, err := d.next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if len(got) != len(want) {
					t.Fatalf("frame %d: %d args, want %d", i, len(got), len(want))
				}
				for j := range want {
					if !bytes.Equal(got[j], want[j]) {
						t.Fatalf("frame %d arg %d differs", i, j)
					}
				}
			}
			if _, err := d.next(); err != io.EOF {
				t.Fatalf("after last frame: err = %v, want io.EOF", err)
			}
		})
	}
}

func TestDecoderErrors(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"http text", []byte("HTTP/1.1 400 Bad Request\r\n"), ErrProtocol},
		{"zero argc", []byte{0x10}, ErrProtocol},
		{"huge length, bytes never sent", []byte{0x11, 0xff, 0xff, 0xff, 0xff}, io.ErrUnexpectedEOF},
		{"cut in length", []byte{0x11, 0, 0}, io.ErrUnexpectedEOF},
		{"cut in argument", []byte{0x11, 0, 0, 0, 5, 'a'}, io.ErrUnexpectedEOF},
		{"cut before second argument", []byte{0x12, 0, 0, 0, 1, 'a'}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newFrameDecoder(bytes.NewReader(tt.input), MaxReplyFrame).next()
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestArgPrefixes(t *testing.T) {
	if s, ok := argString(stringArg("a:b")); !ok || s != "a:b" {
		t.Errorf("string round trip = %q, %v", s, ok)
	}
	j, err := jsonArg(map[string]int{"id": 3})
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := argJSON(j); !ok || string(b) != `{"id":3}` {
		t.Errorf("json round trip = %q, %v", b, ok)
	}
	if _, ok := argJSON([]byte("s:x")); ok {
		t.Error("argJSON accepted a string argument")
	}
	if _, ok := argString([]byte("j")); ok {
		t.Error("argString accepted a one-byte argument")
	}
}

// FuzzDecoder checks that arbitrary bytes never panic the decoder and that whatever it
// decodes re-encodes to the bytes it consumed.
func FuzzDecoder(f *testing.F) {
	seed, _ := appendFrame(nil, []byte(`j:{"args":[]}`), []byte("s:1:1"))
	f.Add(seed)
	f.Add([]byte{0x10})
	f.Add([]byte{0x1f, 0, 0, 0, 0})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newFrameDecoder(bytes.NewReader(data), 1<<10)
		var re []byte
		for {
			args, err := d.next()
			if err != nil {
				break
			}
			re, err = appendFrame(re, args...)
			if err != nil {
				t.Fatalf("decoded frame does not re-encode: %v", err)
			}
		}
		if !bytes.HasPrefix(data, re) {
			t.Fatalf("re-encoded frames are not a prefix of the input")
		}
	})
}
