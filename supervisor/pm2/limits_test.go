package pm2

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/livinity/livinity-agent/internal/testenv"
)

// writeHugeFrame writes a crafted frame of argc arguments: argc-1 of size bytes each
// (zeros, streamed without holding them), then last.
func writeHugeFrame(w io.Writer, argc, size int, last []byte) error {
	if _, err := w.Write([]byte{byte(ampVersion<<4 | argc)}); err != nil {
		return err
	}
	chunk := make([]byte, 1<<20)
	for range argc - 1 {
		if _, err := w.Write(binary.BigEndian.AppendUint32(nil, uint32(size))); err != nil {
			return err
		}
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		}
	}
	_, err := w.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(last))), last...))
	return err
}

// allocatedDuring returns the bytes the Go heap allocated while fn ran.
func allocatedDuring(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestCraftedReplyFrameIsBounded: a peer on the RPC socket answers a call with a 750 MB
// reply body (a crafted reply once drove the reader to 2.6 GB). The client keeps at most
// MaxReplyFrame of it, fails that one call with ErrFrameTooLarge, and the connection
// still works for the next call.
func TestCraftedReplyFrameIsBounded(t *testing.T) {
	home := testenv.ShortTempDir(t)
	l, err := net.Listen("unix", RPCSocket(home))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		dec := newFrameDecoder(conn, MaxReplyFrame)
		for n := 0; ; n++ {
			args, err := dec.next()
			if err != nil || len(args) != 2 {
				return
			}
			if n == 0 {
				if writeHugeFrame(conn, 2, 750<<20, args[1]) != nil {
					return
				}
				continue
			}
			frame, _ := appendFrame(nil, []byte(`j:{"args":[{"msg":"pong"}]}`), args[1])
			conn.Write(frame)
		}
	}()
	c, err := Dial(t.Context(), home)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var callErr error
	alloc := allocatedDuring(func() {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		callErr = c.Ping(ctx)
	})
	t.Logf("a 750 MB reply frame: %d MB allocated by the client", alloc>>20)
	if !errors.Is(callErr, ErrFrameTooLarge) {
		t.Fatalf("ping answered by a huge frame: err = %v, want ErrFrameTooLarge", callErr)
	}
	if alloc > 2*MaxReplyFrame {
		t.Errorf("the client allocated %d MB for one reply; the limit is %d MB", alloc>>20, MaxReplyFrame>>20)
	}
	if err := c.Ping(t.Context()); err != nil {
		t.Errorf("the next call on the same connection: %v", err)
	}
}

// TestCraftedBusFrameIsBounded: a frame of 15 arguments of 50 MB each on the bus is
// dropped without being kept, and the event after it still arrives.
func TestCraftedBusFrameIsBounded(t *testing.T) {
	home := testenv.ShortTempDir(t)
	l, err := net.Listen("unix", filepath.Join(home, "pub.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if writeHugeFrame(conn, 15, 50<<20, []byte("x")) != nil {
			return
		}
		frame, _ := appendFrame(nil, []byte("s:process:event"),
			[]byte(`j:{"event":"exit","at":1,"process":{"name":"a","pm_id":0,"status":"online","restart_time":1}}`))
		conn.Write(frame)
		time.Sleep(10 * time.Second)
	}()
	var ev Event
	alloc := allocatedDuring(func() {
		events, err := Subscribe(t.Context(), home)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case ev = <-events:
		case <-time.After(30 * time.Second):
			t.Fatal("the event after the huge frame never arrived")
		}
	})
	t.Logf("a 700 MB bus frame: %d MB allocated", alloc>>20)
	if ev.Kind != EventExit || ev.Name != "a" {
		t.Fatalf("event = %+v, want the exit of a", ev)
	}
	if alloc > 2*MaxBusFrame+(1<<20) {
		t.Errorf("the bus reader allocated %d MB for one frame; the limit is %d MB", alloc>>20, MaxBusFrame>>20)
	}
}
