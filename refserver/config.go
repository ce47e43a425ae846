//go:build linux

package refserver

import (
	"log"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Config is everything a Server is told; the zero value of each field is a sane default.
type Config struct {
	Addr netip.AddrPort // where to listen; port 0 lets the kernel choose (Addr() says which)
	// Backlog is listen(2)'s backlog: how many finished handshakes may wait for accept. The
	// kernel cuts it to net.core.somaxconn without a word. 0 means unix.SOMAXCONN, the most
	// any kernel accepts since Linux 5.4 (include/linux/socket.h).
	Backlog int
	// Loops is how many epoll loops serve, each a goroutine with an epoll instance of its
	// own; 0 means one per CPU. New raises GOMAXPROCS to Loops+1 if it is lower (server.go's
	// spareP says why).
	Loops int
	// ReusePort gives each loop a listener of its own on the same address and port
	// (SO_REUSEPORT), and the kernel spreads connections over them by a hash of the 4-tuple.
	// Off, the loops share one listener and epoll wakes one or more of them per connection.
	ReusePort bool
	// V6Only sets IPV6_V6ONLY on an IPv6 listener before bind: [::]:P then takes IPv6 clients
	// only, and an IPv4 listener may hold 0.0.0.0:P beside it. Off, the listener keeps the
	// kernel's default, net.ipv6.bindv6only (0: [::]:P takes IPv4 clients too, as
	// ::ffff:a.b.c.d, and holds 0.0.0.0:P). An IPv4 Addr ignores it.
	V6Only bool
	// MaxConns caps the open connections; past it new ones are closed at once. 0: no cap.
	MaxConns int
	// MaxConnsPerIP caps the open connections of one client address, so that one client
	// cannot take every descriptor; past it its new ones are closed at once. 0: no cap.
	MaxConnsPerIP int
	// IdleTimeout closes a connection that has neither sent nor taken a byte for this long,
	// so a client that connects and goes quiet does not hold a descriptor for ever. 0 means
	// DefaultIdleTimeout; a negative value never times out.
	IdleTimeout time.Duration
	// MaxInput caps the input one connection may have kept unconsumed (Handler.OnData):
	// the longest message a protocol accepts. 0 means 64 KiB. A connection whose kept input
	// reaches it is closed with ErrInputLimit, counted and logged.
	MaxInput int
	// MaxOutput caps what one connection may have queued for a peer that reads slowly; 0
	// means 4 MiB. Reading stops as soon as anything is queued, so an echo never gets near
	// it; a Handler that answers many requests from one read watches Conn.Queued. Past it the
	// connection is closed with ErrOutputLimit, counted and logged.
	MaxOutput int
	// MaxQueued caps the output queued for all connections together; 0 means 32 MiB. Past
	// it the loops stop reading until the queues drain to half of it (budget.go).
	MaxQueued int64
	Handler   Handler // the protocol; nil means TupleHandler

	// Log receives the narration: each system call of New, errors, and at most one line a
	// second per kind of shed, refused or reset connection. nil is silent.
	Log *log.Logger
	// LogConns adds a line per accepted and per closed connection, with its 5-tuple; resets
	// are then among the closed, and not also counted in a line of their own.
	LogConns bool
}

// DefaultIdleTimeout is what Config.IdleTimeout's zero value and the CLI's -idle-timeout
// default stand for.
const DefaultIdleTimeout = 10 * time.Minute

// withDefaults fills in what the zero values stand for.
func (c Config) withDefaults() Config {
	if c.Handler == nil {
		c.Handler = TupleHandler{}
	}
	switch {
	case c.IdleTimeout == 0:
		c.IdleTimeout = DefaultIdleTimeout
	case c.IdleTimeout < 0:
		c.IdleTimeout = 0 // the loop's word for never
	}
	if c.MaxInput <= 0 {
		c.MaxInput = 64 << 10
	}
	if c.MaxOutput <= 0 {
		c.MaxOutput = 4 << 20
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = 32 << 20
	}
	if c.Loops <= 0 {
		c.Loops = runtime.NumCPU()
	}
	if c.Backlog <= 0 {
		c.Backlog = unix.SOMAXCONN
	}
	return c
}
