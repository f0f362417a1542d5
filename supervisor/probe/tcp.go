package probe

import (
	"context"
	"net"
)

// probeTCP succeeds when a TCP connection to host:port opens before the deadline; the
// connection is closed at once.
func probeTCP(ctx context.Context, s Spec, _ OnlineFunc) (Outcome, string) {
	addr := s.address()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return classify(ctx, "connect "+addr, err)
	}
	conn.Close()
	return Success, "connect " + addr + ": connected"
}
