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
	// maxArgLen caps one argument this side encodes.
	maxArgLen = 64 << 20
	// MaxReplyFrame bounds the bytes of one RPC reply frame the client keeps (all its
	// arguments together). A getMonitorData reply is about 5.5 KB per app, environment
	// included: 16 MiB is room for thousands of apps.
	MaxReplyFrame = 16 << 20
	// MaxBusFrame bounds one bus frame: an event is about 5.5 KB; a longer log line is
	// dropped (the agent reads no log topic).
	MaxBusFrame = 1 << 20
)

// ErrFrameTooLarge marks a frame whose arguments add up to more than the decoder keeps.
// Its bytes were read and dropped, so the stream is still in step: the next frame can be
// read. It wraps ErrProtocol.
var ErrFrameTooLarge = fmt.Errorf("%w: amp frame over the size limit", ErrProtocol)

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
// several in one read; the buffered reader takes care of both. It keeps at most max bytes
// of arguments per frame, whatever the lengths the peer announces.
type frameDecoder struct {
	r   *bufio.Reader
	max int64
}

// newFrameDecoder returns a decoder keeping at most maxFrame bytes of arguments a frame.
func newFrameDecoder(r io.Reader, maxFrame int64) *frameDecoder {
	return &frameDecoder{r: bufio.NewReaderSize(r, 64<<10), max: maxFrame}
}

// next returns the arguments of the next frame. At a clean end of stream between frames
// it returns io.EOF; a stream that ends inside a frame gives io.ErrUnexpectedEOF; bytes
// that are not amp give an error wrapping ErrProtocol. A frame over the size limit gives
// ErrFrameTooLarge with its arguments: those that did not fit in the limit (in order) are
// nil, the others are kept (an RPC reply's id comes after its body).
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
	budget := d.max
	var tooLarge error
	for i := range args {
		if _, err := io.ReadFull(d.r, lenbuf[:]); err != nil {
			return nil, unexpectedEOF(err)
		}
		n := int64(binary.BigEndian.Uint32(lenbuf[:]))
		if n > budget {
			// drop it as it arrives: the stream stays in step and nothing is kept
			if got, err := io.CopyN(io.Discard, d.r, n); got < n {
				return nil, unexpectedEOF(err)
			}
			tooLarge = fmt.Errorf("%w: argument %d of %d bytes, limit %d a frame", ErrFrameTooLarge, i, n, d.max)
			continue
		}
		budget -= n
		// Grow with the bytes that actually arrive rather than trusting the length.
		var a bytes.Buffer
		a.Grow(int(min(n, 64<<10)))
		if got, err := io.CopyN(&a, d.r, n); got < n {
			return nil, unexpectedEOF(err)
		}
		args[i] = a.Bytes()
	}
	return args, tooLarge
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
