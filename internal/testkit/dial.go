package testkit

import (
	"net"
	"net/netip"
	"time"
)

// Dial connects to ap over TCP, giving up after 5 s, and sets a deadline of within on the
// connection: a test that hangs on it fails with a timeout that names it, not with the
// test binary's panic minutes later. It calls no t.Fatal, so a goroutine may call it.
func Dial(ap netip.AddrPort, within time.Duration) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(within))
	return c.(*net.TCPConn), nil
}
