// Command refserver is the benchmark's refserver: refserver.New with the Echo handler, as
// `refserver -mode echo -quiet -idle-timeout 0` runs it, plus the flags every benchmark server
// shares (a CPU profile on request). Loops are GOMAXPROCS, each with a listener of its own
// (SO_REUSEPORT), as `refserver -reuseport` runs them.
package main

import (
	"net/netip"

	"portproof/bench/internal/serve"
	"portproof/refserver"
)

func main() {
	f := serve.Parse()
	addr, err := netip.ParseAddrPort(f.Addr)
	if err != nil {
		serve.Fatal(err)
	}
	// --8<-- [start:echo]
	srv, err := refserver.New(refserver.Config{
		Addr:        addr,
		Loops:       f.Loops,
		IdleTimeout: -1, // never: the idle scenario holds connections open
		Handler:     refserver.Echo{},
		// A listener per loop (SO_REUSEPORT), as the C server has: a listener the loops
		// share wakes one of them per connection, EPOLLEXCLUSIVE's "one or more", and that
		// tends to be the same loop (chapter 10), which then serves most of the connections.
		ReusePort: true,
	})
	// --8<-- [end:echo]
	if err != nil {
		serve.Fatal(err)
	}
	serve.Announce(srv.Addr().String())
	go func() { serve.Fatal(srv.Serve()) }()
	serve.Run(f)
}
