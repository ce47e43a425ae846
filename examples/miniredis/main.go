//go:build linux

// Command miniredis is a fork of refserver: a subset of the Redis protocol (PING, ECHO, GET,
// SET, DEL, EXISTS, INCR, COMMAND, CONFIG GET, QUIT), served to redis-cli and
// redis-benchmark. Its main is the skeleton a fork copies: flags, signals, a graceful stop.
//
//	go run ./examples/miniredis &
//	redis-cli -p 6380 set greeting "hello world"
//	redis-cli -p 6380 get greeting
//
// Exit codes: 0 after SIGINT or SIGTERM; 1 when it cannot start or fails; 2 for a bad flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"portproof/refserver"
)

// --8<-- [start:main]

func main() {
	fs := flag.NewFlagSet("miniredis", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:6380", "`address` to listen on (port 0: the kernel picks)")
	loops := fs.Int("loops", 0, "epoll `loops` (0: one per CPU)")
	maxConns := fs.Int("max-conns", 0, "open connections at `most` (0: no cap)")
	perIP := fs.Int("max-conns-per-ip", 0,
		"open connections from one address at `most` (0: no cap)")
	idle := fs.Duration("idle-timeout", refserver.DefaultIdleTimeout,
		"close a silent connection after `d` (0: never)")
	maxInput := fs.Int("max-input", 8<<20,
		"the longest command, in `bytes` (a SET's value with it)")
	grace := fs.Duration("shutdown-timeout", 5*time.Second, "how long a stop lets clients finish")
	quiet := fs.Bool("quiet", false, "no line per connection")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(map[bool]int{true: 0, false: 2}[errors.Is(err, flag.ErrHelp)])
	}
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil {
		fmt.Fprintf(os.Stderr,
			"miniredis: -addr %q: want an IP address and port, such as 127.0.0.1:6380\n", *addr)
		os.Exit(2)
	}
	if *idle == 0 {
		*idle = -1 // the flag's 0 is never; Config's zero value is the default
	}
	logger := log.New(os.Stderr, "miniredis: ", 0)
	// --8<-- [start:main-core]
	srv, err := refserver.New(refserver.Config{
		Addr: ap, Loops: *loops, MaxConns: *maxConns, MaxConnsPerIP: *perIP, IdleTimeout: *idle,
		MaxInput: *maxInput, MaxOutput: replyMark + *maxInput, // a reply is at most a value
		Handler: redis{db: &store{keys: map[string][]byte{}}},
		Log:     logger, LogConns: !*quiet,
	})
	if err != nil {
		logger.Print(err)
		os.Exit(1)
	}
	logger.Printf("ready on %s; try: redis-cli -h %s -p %d ping",
		srv.Addr(), srv.Addr().Addr(), srv.Addr().Port())
	// SIGINT or SIGTERM ends ctx: Run stops accepting, answers what each client had sent,
	// and returns. A second signal kills at once (stop restores the default action).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
	if err := srv.Run(ctx, *grace); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		logger.Print(err)
		os.Exit(1)
	}
	logger.Printf("stopped: %s", srv.Stats())
	// --8<-- [end:main-core]
}

// --8<-- [end:main]
