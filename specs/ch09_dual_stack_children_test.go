//go:build linux

package specs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/testkit"
	"portproof/refserver"
	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// ch9Arg is how the dual-stack child starts refserver on [::].
type ch9Arg struct {
	V6Only bool `json:"v6only"` // Config.V6Only
}

// --8<-- [start:dualstack-child]

// ch9Child starts refserver on [::] with the port the kernel picks, connects an IPv4 and an
// IPv6 client to it, then starts a second refserver on 0.0.0.0 and the same port. Its
// sandbox's lo is the only interface: [::] and 0.0.0.0 reach nothing else.
var ch9Child = lab.RegisterChild("ch9.dualstack", func(arg ch9Arg) (evidence.DualStack, error) {
	var seen evidence.DualStack
	var err error
	if seen.BindV6Only, err = sock.Sysctl("net.ipv6.bindv6only"); err != nil {
		return seen, err
	}
	srv6, err := ch9Start(&seen.Wildcard6, refserver.Config{
		Addr: netip.MustParseAddrPort("[::]:0"), V6Only: arg.V6Only})
	if err != nil {
		return seen, err
	}
	defer ch9Stop(srv6)
	port := srv6.Addr().Port()
	for _, to := range []netip.AddrPort{ch9At("127.0.0.1", port), ch9At("::1", port)} {
		seen.Clients = append(seen.Clients, ch9Greeted(to))
	}

	// Where the [::] listener holds IPv4's port too, this bind fails with EADDRINUSE.
	srv4, err := ch9Start(&seen.Wildcard4, refserver.Config{Addr: ch9At("0.0.0.0", port)})
	if err == nil {
		defer ch9Stop(srv4)
		seen.Clients = append(seen.Clients, ch9Greeted(ch9At("127.0.0.1", port)))
		seen.Wildcard4.Accepted = srv4.Stats().Accepted
	} else if seen.Wildcard4.Errno == "" {
		return seen, err
	}
	seen.Wildcard6.Accepted = srv6.Stats().Accepted
	return seen, nil
})

// --8<-- [end:dualstack-child]

// ch9Start is refserver.New and Serve with one loop, its narration kept in l; a bind the
// kernel refuses is l.Errno, not an error.
func ch9Start(l *evidence.DualStackListener, cfg refserver.Config) (*refserver.Server, error) {
	l.Asked = cfg.Addr.String()
	narration := testkit.NewLines()
	cfg.Loops, cfg.Log = 1, log.New(narration, "", 0)
	srv, err := refserver.New(cfg)
	l.Narration = narration.All()
	if err != nil {
		l.Errno = sock.ErrnoName(err)
		return nil, err
	}
	fd := srv.Listeners()[0]
	l.Addr = srv.Addr().String()
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		ch9Stop(srv)
		return nil, fmt.Errorf("getsockopt SO_DOMAIN: %w", err)
	}
	l.Domain = ch9Domain(domain)
	if domain == unix.AF_INET6 {
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			ch9Stop(srv)
			return nil, fmt.Errorf("getsockopt IPV6_V6ONLY: %w", err)
		}
		l.V6Only = &v
	}
	go srv.Serve()
	return srv, nil
}

func ch9Stop(srv *refserver.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// ch9Greeted connects to `to` and reads refserver's greeting; a refused connect is the
// client's Errno.
func ch9Greeted(to netip.AddrPort) evidence.DualStackClient {
	c := evidence.DualStackClient{To: to.String(), Domain: ch9Domain(sock.Family(to))}
	fd, err := lab.DialTo(to)
	if err != nil {
		c.Errno = sock.ErrnoName(err)
		if c.Errno == "" {
			c.Errno = err.Error()
		}
		return c
	}
	defer unix.Close(fd)
	if t, err := sock.TupleOf(fd); err == nil {
		c.Tuple = t.String()
	}
	line, err := ch9ReadLine(fd)
	if err != nil {
		c.Errno = err.Error()
		return c
	}
	c.Greeting = line
	// "tcp [::ffff:127.0.0.1]:40000 -> [::ffff:127.0.0.1]:7000  (protocol, you, me...)"
	if f := strings.Fields(line); len(f) >= 4 && f[2] == "->" {
		c.SeenAs, c.Server = f[1], f[3]
	}
	return c
}

// ch9ReadLine reads up to the first newline, waiting at most lab.ReadWithin in all.
func ch9ReadLine(fd int) (string, error) {
	deadline := time.Now().Add(lab.ReadWithin)
	var got []byte
	buf := make([]byte, 512)
	for range 100 {
		if err := sock.WaitFor(fd, unix.POLLIN, time.Until(deadline)); err != nil {
			return string(got), err
		}
		n, err := sock.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return string(got), err
		}
		if n == 0 {
			return string(got), errors.New("end of stream before a greeting")
		}
		got = append(got, buf[:n]...)
		if i := bytes.IndexByte(got, '\n'); i >= 0 {
			return string(got[:i]), nil
		}
	}
	return string(got), errors.New("no newline in 100 reads")
}

func ch9At(addr string, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), port)
}

func ch9Domain(d int) string {
	switch d {
	case unix.AF_INET:
		return "AF_INET"
	case unix.AF_INET6:
		return "AF_INET6"
	}
	return fmt.Sprint(d)
}
