//go:build linux

package netns

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DialFrom connects from the source address src (port chosen by the kernel) to dst over
// IPv4. IP_BIND_ADDRESS_NO_PORT lets bind take the address alone and leaves the port to
// connect, which picks one per destination: without it bind would pick a port unique to the
// source address, and each source could hold 28,232 connections at most, whatever the
// destinations.
func DialFrom(src netip.Addr, dst netip.AddrPort, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{
		Timeout:   timeout,
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			return errors.Join(err, serr)
		},
	}
	c, err := d.Dial("tcp4", dst.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
