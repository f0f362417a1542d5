package pm2

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// The amp framing used by PM2's axon sockets: one meta byte (version<<4 | argc), then for
// each argument a uint32 big-endian length and that many bytes. amp-message prefixes a
// string argument with "s:" and a JSON argument with "j:"; anything else is a raw blob.

const (
	ampVersion = 1
	// maxArgs is the most arguments the 4-bit argc can carry.
	maxArgs = 15
	// maxArgLen caps one decoded argument so that garbage on a socket cannot make the
	// decoder allocate gigabytes. A getMonitorData reply is about 5.5 KB per app.
	maxArgLen = 64 << 20
)

// ErrProtocol marks bytes or replies that do not follow PM2's socket protocol: a bad amp
// frame, an argument that is not the expected JSON, or a reply of an unexpected shape.
var ErrProtocol = errors.New("pm2 socket protocol violation")

// appendFrame appends the amp frame holding args to dst.
func appendFrame(dst []byte, args ...[]byte) ([]byte, error) {
	if len(args) == 0 || len(args) > maxArgs {
		return dst, fmt.Errorf("encode amp frame: %d arguments, want 1 to %d", len(args), maxArgs)
	}
	dst = append(dst, byte(ampVersion<<4|len(args)))
	for i, a := range args {
		if len(a) > maxArgLen {
			return dst, fmt.Errorf("encode amp frame: argument %d is %d bytes, limit %d", i, len(a), maxArgLen)
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(a)))
		dst = append(dst, a...)
	}
	return dst, nil
}

// stringArg encodes s as an amp-message string argument.
func stringArg(s string) []byte { return append([]byte("s:"), s...) }

// jsonArg encodes v as an amp-message JSON argument.
func jsonArg(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode json argument: %w", err)
	}
	return append([]byte("j:"), b...), nil
}

// argString returns the text of an "s:" argument.
func argString(a []byte) (string, bool) {
	if len(a) < 2 || a[0] != 's' || a[1] != ':' {
		return "", false
	}
	return string(a[2:]), true
}

// argJSON returns the JSON text of a "j:" argument.
func argJSON(a []byte) ([]byte, bool) {
	if len(a) < 2 || a[0] != 'j' || a[1] != ':' {
		return nil, false
	}
	return a[2:], true
}

// frameDecoder reads amp frames from a byte stream. Frames may arrive split across reads or
// several in one read; the buffered reader takes care of both.
type frameDecoder struct {
	r *bufio.Reader
}

func newFrameDecoder(r io.Reader) *frameDecoder {
	return &frameDecoder{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the arguments of the next frame. At a clean end of stream between frames
// it returns io.EOF; a stream that ends inside a frame gives io.ErrUnexpectedEOF; bytes
// that are not amp give an error wrapping ErrProtocol.
func (d *frameDecoder) next() ([][]byte, error) {
	meta, err := d.r.ReadByte()
	if err != nil {
		return nil, err
	}
	if meta>>4 != ampVersion {
		return nil, fmt.Errorf("%w: amp frame version %d, want %d (meta byte %#02x)", ErrProtocol, meta>>4, ampVersion, meta)
	}
	argc := int(meta & 0x0f)
	if argc == 0 {
		return nil, fmt.Errorf("%w: amp frame with no arguments", ErrProtocol)
	}
	args := make([][]byte, argc)
	var lenbuf [4]byte
	for i := range args {
		if _, err := io.ReadFull(d.r, lenbuf[:]); err != nil {
			return nil, unexpectedEOF(err)
		}
		n := binary.BigEndian.Uint32(lenbuf[:])
		if n > maxArgLen {
			return nil, fmt.Errorf("%w: amp argument %d is %d bytes, limit %d", ErrProtocol, i, n, maxArgLen)
		}
		// Grow with the bytes that actually arrive rather than trusting the length.
		var a bytes.Buffer
		a.Grow(int(min(n, 64<<10)))
		if got, err := io.CopyN(&a, d.r, int64(n)); got < int64(n) {
			return nil, unexpectedEOF(err)
		}
		args[i] = a.Bytes()
	}
	return args, nil
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
