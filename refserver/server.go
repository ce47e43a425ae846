//go:build linux

package refserver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// Server is a listening address served by a set of epoll loops.
type Server struct {
	cfg  Config // with the defaults filled in
	addr netip.AddrPort
	// listeners are the passive sockets; mu guards them, since Shutdown closes them while
	// Stats may read their queues.
	listeners []int
	mu        sync.Mutex
	loops     []*loop
	adm       *admission // the policy at the door, shared by the loops
	count     counters   // what Stats reports
	budget    budget     // the output queued for all connections together
	log       logbook

	state    atomic.Int32 // stateServing, then stateDraining
	deadline atomic.Int64 // when draining loops close what is left (unix nanoseconds)
	cut      atomic.Bool  // a loop closed connections at the deadline instead of draining them
	// listenersOff is done when every loop has taken the listeners out of its epoll set:
	// Shutdown closes them only then, so no loop accept4s a number being reused.
	listenersOff sync.WaitGroup
	serveOnce    sync.Once
	done         chan struct{} // closed when every loop has returned
	serveErr     error
}

const (
	stateServing = iota
	stateDraining
)

// --8<-- [start:new]

// New makes the passive socket(s) and the loops, narrating each system call to cfg.Log:
// socket, setsockopt, bind, listen. Connections queue in the kernel from here on, before
// Serve accepts any: the handshake does not wait for the application.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg.withDefaults(), done: make(chan struct{})}
	s.log = logbook{log: cfg.Log, conns: cfg.LogConns}
	s.spareP()
	s.adm = newAdmission(cfg, &s.count, &s.log)
	s.budget = budget{max: s.cfg.MaxQueued, log: &s.log, resume: func() {
		for _, l := range s.loops {
			l.wake()
		}
	}}
	nlisteners := 1
	if s.cfg.ReusePort {
		nlisteners = s.cfg.Loops
	}
	addr := cfg.Addr
	for range nlisteners {
		fd, err := s.openListener(addr)
		if err != nil {
			s.closeAll()
			return nil, err
		}
		s.listeners = append(s.listeners, fd)
		if addr, err = sock.LocalAddr(fd); err != nil { // the port the kernel chose for port 0
			s.closeAll()
			return nil, err
		}
	}
	s.addr = addr
	// The spare descriptor for EMFILE (accept.go) is taken before the first connection.
	s.adm.retakeSpare()
	for i := range s.cfg.Loops {
		lfd := s.listeners[0]
		if s.cfg.ReusePort {
			lfd = s.listeners[i]
		}
		l, err := newLoop(i, s, lfd)
		if err != nil {
			s.closeAll()
			return nil, err
		}
		s.loops = append(s.loops, l)
	}
	s.listenersOff.Add(len(s.loops))
	return s, nil
}

// spareP leaves the Go runtime one P more than there are loops. A loop sleeps in epoll_wait
// inside a system call, and while no P is idle the runtime's monitor thread (sysmon) takes
// the P of a thread that has been in a system call for more than 20 µs and hands it to
// another thread (retake, in runtime/proc.go): with a loop per P every sleep of every loop
// costs that hand-off and the way back, and the monitor itself wakes every 20 µs to do it.
// With a P to spare it leaves sleeping loops alone (the performance page measures the
// difference).
func (s *Server) spareP() {
	if prev := runtime.GOMAXPROCS(0); prev <= s.cfg.Loops {
		runtime.GOMAXPROCS(s.cfg.Loops + 1)
		s.log.printf("GOMAXPROCS %d -> %d: one P more than the %d loops, so that the "+
			"runtime never takes one from a loop asleep in epoll_wait",
			prev, s.cfg.Loops+1, s.cfg.Loops)
	}
}

// --8<-- [start:openlistener]

// openListener is the chapter "the server, step by step" in code.
func (s *Server) openListener(addr netip.AddrPort) (int, error) {
	family := sock.Family(addr)
	fd, err := sock.Socket(family)
	s.log.narrate("socket(%s, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC, IPPROTO_TCP)", fd, err,
		familyName(family))
	if err != nil {
		return -1, fmt.Errorf("listen on %s: %w", addr, err)
	}
	step := func(err error, format string, args ...any) error {
		s.log.narrate(format, 0, err, args...)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		return nil
	}
	err = step(sock.SetReuseAddr(fd), "setsockopt(%d, SOL_SOCKET, SO_REUSEADDR, 1)", fd)
	if err == nil && s.cfg.ReusePort {
		err = step(sock.SetReusePort(fd), "setsockopt(%d, SOL_SOCKET, SO_REUSEPORT, 1)", fd)
	}
	// --8<-- [start:v6only]
	if err == nil && s.cfg.V6Only && family == unix.AF_INET6 {
		err = step(sock.SetV6Only(fd, true), "setsockopt(%d, IPPROTO_IPV6, IPV6_V6ONLY, 1)", fd)
	}
	// --8<-- [end:v6only]
	if err == nil {
		err = step(sock.Bind(fd, addr), "bind(%d, %s)", fd, addr)
	}
	if err == nil {
		err = step(sock.Listen(fd, s.cfg.Backlog), "listen(%d, %d)", fd, s.cfg.Backlog)
	}
	if err != nil {
		return -1, err
	}
	if q, err := sock.AcceptQueueOf(fd); err == nil {
		somax, _ := sock.Sysctl("net.core.somaxconn")
		// The limit is sk_max_ack_backlog; the kernel calls the queue full only when it holds
		// more (sk_acceptq_is_full), so it holds one connection more than its limit.
		s.log.printf("  the accept queue's limit is %d (TCP_INFO tcpi_sacked; it holds %d, "+
			"sk_acceptq_is_full; backlog %d, net.core.somaxconn %s)",
			q.Max, q.Max+1, s.cfg.Backlog, somax)
	}
	return fd, nil
}

// --8<-- [end:openlistener]

// --8<-- [end:new]

func familyName(f int) string {
	if f == unix.AF_INET {
		return "AF_INET"
	}
	return "AF_INET6"
}

// Addr is the address the server listens on, with the port the kernel chose for port 0.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Listeners are the passive sockets' descriptors, for inspection (AcceptQueueOf); -1 once
// Shutdown has closed them.
func (s *Server) Listeners() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.listeners...)
}

// Serve runs the loops and returns when Shutdown has drained them, or when one fails.
func (s *Server) Serve() error {
	started := false
	s.serveOnce.Do(func() {
		started = true
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, l := range s.loops {
			wg.Go(func() {
				if err := l.run(); err != nil {
					mu.Lock()
					s.serveErr = errors.Join(s.serveErr, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		s.closeAll()
		close(s.done)
	})
	if !started {
		return errors.New("refserver: Serve called twice")
	}
	return s.serveErr
}

// --8<-- [start:serverrun]

// Run serves until ctx is done, then shuts down, letting open connections finish for at most
// grace: the whole life of a server for a fork's main, which makes ctx with
// signal.NotifyContext (SIGINT, SIGTERM). It returns Serve's error if a loop failed, and
// otherwise Shutdown's: nil, or context.DeadlineExceeded when grace ran out and connections
// were cut.
func (s *Server) Run(ctx context.Context, grace time.Duration) error {
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := s.Shutdown(shutdownCtx)
	if serr := <-served; serr != nil {
		return serr
	}
	return err
}

// --8<-- [end:serverrun]

// --8<-- [start:shutdown]

// --8<-- [start:shutdown-core]

// Shutdown stops accepting and lets every connection end with FIN once it is answered: the
// Handler gets every byte the kernel had received from the peer when the drain began (its
// receive queue then, SIOCINQ), with backpressure as ever, and what it wrote is sent. It
// returns once all are closed. At ctx's deadline what is left is closed at once, and
// Shutdown returns ctx.Err(). Connections still in the accept queue are reset when the
// listener closes: the kernel answers them RST.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.state.CompareAndSwap(stateServing, stateDraining) {
		<-s.done
		return nil
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(24 * time.Hour)
	}
	s.deadline.Store(deadline.UnixNano())
	go s.Serve() // no-op if serving; drains the loops if Serve was never called
	for _, l := range s.loops {
		l.wake()
	}
	// Each loop takes the listeners out of its epoll set before they are closed, so no
	// loop is inside accept4 on a descriptor number that is being reused.
	s.listenersOff.Wait()
	s.closeListeners()
	// --8<-- [end:shutdown-core]
	select {
	case <-s.done:
	case <-ctx.Done():
		s.deadline.Store(0)
		for _, l := range s.loops {
			l.wake()
		}
		<-s.done
	}
	if !s.cut.Load() {
		return nil
	}
	// The loops watch the same deadline on their own clock, and may close what is left a
	// moment before ctx's timer fires: ctx.Err() can still be nil then, and done can win
	// the select above. What was closed, not which came first, decides the answer.
	if err := ctx.Err(); err != nil {
		return err
	}
	return context.DeadlineExceeded
}

// --8<-- [end:shutdown]

func (s *Server) shuttingDown() bool { return s.state.Load() == stateDraining }

// --8<-- [start:closelisteners]

// closeListeners closes the passive sockets, and says what the kernel did with the
// connections still queued on them.
func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	closed := false
	var queued uint32
	for i, fd := range s.listeners {
		if fd >= 0 {
			// What close(2) is about to reset: the connections whose handshake the kernel
			// finished and nobody accepted (inet_csk_listen_stop aborts each, with RST).
			if q, err := sock.AcceptQueueOf(fd); err == nil {
				queued += q.Len
			}
			s.log.narrate("close(%d)", 0, unix.Close(fd), fd)
			s.listeners[i] = -1
			closed = true
		}
	}
	switch {
	case closed && queued > 0:
		s.log.printf("  the listener is gone: a connect is refused now (RST), and the %d "+
			"connections still in its accept queue were reset (RST)", queued)
	case closed:
		s.log.printf("  the listener is gone: a connect is refused now (RST); " +
			"its accept queue was empty")
	}
}

// --8<-- [end:closelisteners]

func (s *Server) closeAll() {
	s.closeListeners()
	for _, l := range s.loops {
		l.close()
	}
	s.adm.closeSpare()
}
