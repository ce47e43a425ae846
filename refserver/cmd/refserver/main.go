//go:build linux

// Command refserver runs the reference server and narrates what the kernel does: each
// system call of the start-up with its result, then a line per connection with its 5-tuple.
//
//	go run ./refserver/cmd/refserver            # then, in another terminal: nc 127.0.0.1 7000
//	go run ./refserver/cmd/refserver -addr [::1]:7000 -mode echo
//
// Exit codes: 0 after a shutdown by SIGINT or SIGTERM; 1 when the server cannot start or
// fails (a port in use, say); 2 for a bad flag or argument.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver"
	"portproof/refserver/sock"
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, unix.SIGINT, unix.SIGTERM, unix.SIGUSR1)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, sig))
}

// options are the parsed flags.
type options struct {
	addr            netip.AddrPort
	backlog         int
	mode            string
	loops           int
	reusePort       bool
	v6only          bool
	maxConns        int
	maxConnsPerIP   int
	idleTimeout     time.Duration
	shutdownTimeout time.Duration
	nofile          uint64
	quiet           bool
	maxInput        size
	maxOutput       size
	maxQueued       size
}

// size is a flag of bytes, written as a plain number or with KiB, MiB or GiB: "4MiB".
type size int64

func (z *size) String() string { return strconv.FormatInt(int64(*z), 10) }

func (z *size) Set(v string) error {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			v, mult = n, m
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return errors.New("want a number of bytes, such as 65536, 64KiB or 4MiB")
	}
	*z = size(n * mult)
	return nil
}

// usageError is a bad flag or argument: one line, exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func parse(args []string, stdout io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("refserver", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are ours to print, in one line
	addr := fs.String("addr", "127.0.0.1:7000", "`address` to listen on: IPv4 as 127.0.0.1:7000, IPv6 as [::1]:7000; port 0 lets the kernel pick")
	fs.IntVar(&o.backlog, "backlog", unix.SOMAXCONN, "listen(2) `backlog`; the kernel caps it at net.core.somaxconn")
	fs.StringVar(&o.mode, "mode", "tuple", "`protocol`: tuple (tell each client its 5-tuple, then echo) or echo (echo only)")
	fs.IntVar(&o.loops, "loops", 0, "epoll `loops`, each an epoll instance and the goroutine that waits on it; 0 means one per CPU")
	fs.BoolVar(&o.reusePort, "reuseport", false, "give each loop its own listener on the same port (SO_REUSEPORT)")
	fs.BoolVar(&o.v6only, "v6only", false, "set IPV6_V6ONLY on an IPv6 listener: [::]:7000 takes IPv6 clients only, and 0.0.0.0:7000 stays free for IPv4")
	fs.IntVar(&o.maxConns, "max-conns", 0, "open connections at `most`; more are closed at once (0: no cap but the descriptor limit)")
	fs.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", 0, "open connections from one client address at `most`; its next ones are closed at once (0: no cap)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", refserver.DefaultIdleTimeout, "close a connection silent for this `duration` (0: never)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 5*time.Second, "on SIGINT/SIGTERM, let connections finish for at most this `duration`")
	fs.Uint64Var(&o.nofile, "nofile", 0, "lower RLIMIT_NOFILE to `n` descriptors, to watch EMFILE and shedding (0: leave it)")
	fs.Var(&o.maxInput, "max-input", "the longest message a connection may leave unconsumed, in `bytes` (0: 64KiB)")
	fs.Var(&o.maxOutput, "max-output", "output one connection may have queued for a slow reader, in `bytes` (0: 4MiB)")
	fs.Var(&o.maxQueued, "max-queued", "output queued for all connections together, in `bytes`, past which reading pauses (0: 32MiB)")
	fs.BoolVar(&o.quiet, "quiet", false, "no line per connection (sheds, refusals and resets still get at most a line a second)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: refserver [flags]\n\nA TCP server on raw Linux system calls that narrates what the kernel does.\n\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			fmt.Fprintf(stdout, "\nSignals: SIGUSR1 prints a stats line; SIGINT or SIGTERM shuts down gracefully:\nthe listener closes, and each connection's bytes received until then are answered.\nExit codes: 0 after a shutdown, 1 when the server cannot start or fails, 2 for a bad flag.\n")
			return o, err
		}
		return o, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Sprintf("unexpected argument %q: every setting is a flag (see -h)", fs.Arg(0))}
	}
	var err error
	if o.addr, err = netip.ParseAddrPort(*addr); err != nil {
		return o, usageError{fmt.Sprintf("-addr %q: want an IP address and port, such as 127.0.0.1:7000 or [::1]:7000 (no host names)", *addr)}
	}
	switch {
	case o.v6only && (o.addr.Addr().Is4() || o.addr.Addr().Is4In6()):
		return o, usageError{fmt.Sprintf("-v6only with -addr %s: IPV6_V6ONLY is for an IPv6 listener, such as [::]:7000", o.addr)}
	case o.backlog < 0:
		return o, usageError{fmt.Sprintf("-backlog %d: must be 0 or more", o.backlog)}
	case o.mode != "tuple" && o.mode != "echo":
		return o, usageError{fmt.Sprintf("-mode %q: want tuple or echo", o.mode)}
	case o.loops < 0:
		return o, usageError{fmt.Sprintf("-loops %d: must be 0 or more", o.loops)}
	case o.maxConns < 0:
		return o, usageError{fmt.Sprintf("-max-conns %d: must be 0 or more", o.maxConns)}
	case o.maxConnsPerIP < 0:
		return o, usageError{fmt.Sprintf("-max-conns-per-ip %d: must be 0 or more", o.maxConnsPerIP)}
	case o.idleTimeout < 0:
		return o, usageError{fmt.Sprintf("-idle-timeout %v: must be 0 or more", o.idleTimeout)}
	case o.shutdownTimeout <= 0:
		return o, usageError{fmt.Sprintf("-shutdown-timeout %v: must be more than 0", o.shutdownTimeout)}
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	o, err := parse(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "refserver: %v\n", err)
		return exitUsage
	}
	logger := log.New(stdout, "", 0)
	if o.nofile > 0 {
		if err := lowerNofile(o.nofile, logger); err != nil {
			fmt.Fprintf(stderr, "refserver: -nofile %d: %v\n", o.nofile, err)
			return exitUsage
		}
	}
	var handler refserver.Handler = refserver.TupleHandler{}
	if o.mode == "echo" {
		handler = refserver.Echo{}
	}
	idle := o.idleTimeout
	if idle == 0 {
		idle = -1 // the flag's 0 is "never"; Config's zero value is DefaultIdleTimeout
	}
	logger.Printf("refserver: pid %d, mode %s", os.Getpid(), o.mode)
	srv, err := refserver.New(refserver.Config{
		Addr: o.addr, Backlog: o.backlog, Loops: o.loops, ReusePort: o.reusePort, V6Only: o.v6only,
		MaxConns: o.maxConns, MaxConnsPerIP: o.maxConnsPerIP, IdleTimeout: idle, Handler: handler,
		MaxInput: int(o.maxInput), MaxOutput: int(o.maxOutput), MaxQueued: int64(o.maxQueued),
		Log: logger, LogConns: !o.quiet,
	})
	if err != nil {
		fmt.Fprintf(stderr, "refserver: %v%s\n", err, hint(err))
		return exitFailure
	}
	logger.Printf("listening on %s; try: nc %s %d   (stats: kill -USR1 %d; stop: Ctrl-C)",
		srv.Addr(), ncHost(srv.Addr()), srv.Addr().Port(), os.Getpid())
	if w := exposure(srv.Addr(), o); w != "" {
		logger.Print(w)
	}
	if d := dualStack(srv.Addr(), srv.Listeners()[0]); d != "" {
		logger.Print(d)
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	for {
		select {
		case err := <-served:
			fmt.Fprintf(stderr, "refserver: %v\n", err)
			return exitFailure
		case s := <-sig:
			if s == unix.SIGUSR1 {
				logger.Printf("stats: %s", srv.Stats())
				continue
			}
			return shutdown(srv, s, o.shutdownTimeout, logger, sig, served)
		}
	}
}

// shutdown drains the server; a second SIGINT or SIGTERM cuts the drain short.
func shutdown(srv *refserver.Server, s os.Signal, timeout time.Duration, logger *log.Logger, sig <-chan os.Signal, served <-chan error) int {
	logger.Printf("%s: no more connections; letting %d open ones finish (at most %v; signal again to stop now)",
		unix.SignalName(s.(unix.Signal)), srv.Stats().Open, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		for s := range sig {
			if s != unix.SIGUSR1 {
				cancel()
				return
			}
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Printf("shutdown: %v; the connections left were closed", err)
	}
	if err := <-served; err != nil {
		logger.Printf("refserver: %v", err)
		return exitFailure
	}
	logger.Printf("stopped: %s", srv.Stats())
	return exitOK
}

// lowerNofile sets RLIMIT_NOFILE's soft limit, the one accept4 meets as EMFILE. Raising it
// above the hard limit needs CAP_SYS_RESOURCE, which is why only lowering is offered.
func lowerNofile(n uint64, logger *log.Logger) error {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if n > rl.Max {
		return fmt.Errorf("above the hard limit %d, which only CAP_SYS_RESOURCE may raise", rl.Max)
	}
	rl.Cur = n
	err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl)
	if err == nil {
		logger.Printf("setrlimit(RLIMIT_NOFILE, {cur %d, max %d}) = 0", rl.Cur, rl.Max)
	}
	return err
}

// exposure warns when the server can be reached from other machines, and names the limits
// that are off: loopback is the default so that nobody is exposed without asking.
func exposure(ap netip.AddrPort, o options) string {
	if ap.Addr().Unmap().IsLoopback() {
		return ""
	}
	var off []string
	if o.maxConns == 0 {
		off = append(off, "-max-conns")
	}
	if o.maxConnsPerIP == 0 {
		off = append(off, "-max-conns-per-ip")
	}
	if o.idleTimeout == 0 {
		off = append(off, "-idle-timeout")
	}
	w := fmt.Sprintf("  %s is not loopback: any host that can route to this machine may connect", ap.Addr())
	if len(off) > 0 {
		w += "; no limit is set by " + strings.Join(off, ", ")
	}
	return w
}

// dualStack says which families an IPv6 listener on the wildcard address takes, from
// IPV6_V6ONLY as the kernel reads it back (the listener's own, or the default it got from
// net.ipv6.bindv6only): chapter 9's lesson, to try with nc -4 and nc -6.
func dualStack(ap netip.AddrPort, listener int) string {
	if !ap.Addr().Is6() || ap.Addr().Is4In6() || !ap.Addr().IsUnspecified() {
		return ""
	}
	v6only, err := unix.GetsockoptInt(listener, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
	if err != nil {
		return ""
	}
	bindv6only, _ := sock.Sysctl("net.ipv6.bindv6only")
	return dualStackWords(ap.Port(), v6only, bindv6only)
}

func dualStackWords(port uint16, v6only int, bindv6only string) string {
	if v6only != 0 {
		return fmt.Sprintf("  IPV6_V6ONLY 1: IPv6 clients only (try: nc -6 ::1 %d); an IPv4 client is refused, "+
			"unless an IPv4 listener holds 0.0.0.0:%d beside this one", port, port)
	}
	return fmt.Sprintf("  IPV6_V6ONLY 0 (net.ipv6.bindv6only %s): IPv4 clients reach this listener too, "+
		"as ::ffff:a.b.c.d (try: nc -4 127.0.0.1 %d), and 0.0.0.0:%d is taken", bindv6only, port, port)
}

// hint adds what to do about the errors a reader is likely to meet.
func hint(err error) string {
	switch {
	case errors.Is(err, unix.EADDRINUSE):
		return " (EADDRINUSE: another socket holds this address and port; stop it or pick another -addr, port 0 for any)"
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return " (EADDRNOTAVAIL: no interface of this machine has that address)"
	case errors.Is(err, unix.EACCES):
		return " (EACCES: ports below net.ipv4.ip_unprivileged_port_start need CAP_NET_BIND_SERVICE)"
	case errors.Is(err, unix.EAFNOSUPPORT):
		return " (EAFNOSUPPORT: IPv6 is disabled on this machine)"
	}
	if name := sock.ErrnoName(err); name != "" {
		return " (" + name + ")"
	}
	return ""
}

// ncHost spells the address as nc wants it: no brackets around IPv6.
func ncHost(ap netip.AddrPort) string {
	return strings.Trim(ap.Addr().String(), "[]")
}
