package serve

import (
	"net/netip"

	"portproof/refserver"
)

// Refserver serves h on refserver as both of the benchmark's refservers do, so that they
// differ only in their Handler, and returns when the driver signals (Run).
func Refserver(f Flags, h refserver.Handler) {
	addr, err := netip.ParseAddrPort(f.Addr)
	if err != nil {
		Fatal(err)
	}
	// --8<-- [start:config]
	srv, err := refserver.New(refserver.Config{
		Addr:        addr,
		Loops:       f.Loops,
		IdleTimeout: -1, // never: the idle scenario holds connections open
		Handler:     h,
		// A listener per loop (SO_REUSEPORT), as the C server has: a listener the loops
		// share wakes one of them per connection, EPOLLEXCLUSIVE's "one or more", and that
		// tends to be the same loop (chapter 10), which then serves most of the connections.
		ReusePort: true,
	})
	// --8<-- [end:config]
	if err != nil {
		Fatal(err)
	}
	Announce(srv.Addr().String())
	go func() { Fatal(srv.Serve()) }()
	Run(f)
}
