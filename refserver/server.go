//go:build linux

package refserver

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Config is everything a Server is told; the zero value of each field is a sane default.
type Config struct {
	Addr netip.AddrPort // where to listen; port 0 lets the kernel choose (Addr() says which)
	// Backlog is listen(2)'s backlog: how many finished handshakes may wait for accept. The
	// kernel cuts it to net.core.somaxconn without a word. 0 means unix.SOMAXCONN (4096).
	Backlog int
	Loops   int // epoll loops, each a goroutine with an epoll instance of its own; 0 means one per CPU
	// ReusePort gives each loop a listener of its own on the same address and port
	// (SO_REUSEPORT), and the kernel spreads connections over them by a hash of the 4-tuple.
	// Off, the loops share one listener and epoll wakes one of them per connection.
	ReusePort bool
	MaxConns  int // open connections at most; past it new ones are closed at once. 0: no cap
	// MaxConnsPerIP caps the open connections of one client address, so that one client
	// cannot take every descriptor; past it its new ones are closed at once. 0: no cap.
	MaxConnsPerIP int
	// IdleTimeout closes a connection that has neither sent nor taken a byte for this long.
	// 0: never.
	IdleTimeout time.Duration
	// MaxOutput caps what one connection may have queued for a peer that reads slowly;
	// 0 means 1 MiB. Reading stops as soon as anything is queued, so an echo never gets
	// near it; it stops a Handler that writes far more than it reads.
	MaxOutput int
	Handler   Handler // the protocol; nil means TupleHandler

	// Log receives the narration: each system call of New, errors, and at most one line a
	// second per kind of shed, refused or reset connection. nil is silent.
	Log *log.Logger
	// LogConns adds a line per accepted and per closed connection, with its 5-tuple; resets
	// are then among the closed, and not also counted in a line of their own.
	LogConns bool
}

// Server is a listening address served by a set of epoll loops.
type Server struct {
	cfg  Config // with the defaults filled in
	addr netip.AddrPort
	// listeners are the passive sockets; mu guards them, since Shutdown closes them while
	// Stats may read their queues.
	listeners []int
	mu        sync.Mutex
	loops     []*loop
	adm       admission

	state    atomic.Int32 // stateServing, then stateDraining
	deadline atomic.Int64 // when draining loops close what is left (unix nanoseconds)
	cut      atomic.Bool  // a loop closed connections at the deadline instead of draining them
	// listenersOff is done when every loop has taken the listeners out of its epoll set:
	// Shutdown closes them only then, so no loop accept4s a number being reused.
	listenersOff sync.WaitGroup
	serveOnce    sync.Once
	done         chan struct{} // closed when every loop has returned
	serveErr     error

	rlShed, rlRefused, rlPerIP, rlReset, rlErr rateLog
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
	s := &Server{cfg: cfg, done: make(chan struct{})}
	s.adm.maxConns = int64(cfg.MaxConns)
	if cfg.MaxConnsPerIP > 0 {
		s.adm.maxPerIP = cfg.MaxConnsPerIP
		s.adm.perIP = make(map[netip.Addr]int)
	}
	s.adm.spare = -1
	if s.cfg.Handler == nil {
		s.cfg.Handler = TupleHandler{}
	}
	if s.cfg.MaxOutput <= 0 {
		s.cfg.MaxOutput = 1 << 20
	}
	if s.cfg.Loops <= 0 {
		s.cfg.Loops = runtime.NumCPU()
	}
	if s.cfg.Backlog <= 0 {
		s.cfg.Backlog = unix.SOMAXCONN
	}
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
		if addr, err = LocalAddr(fd); err != nil { // the port the kernel chose for port 0
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

// --8<-- [start:openlistener]

// openListener is the chapter "the server, step by step" in code.
func (s *Server) openListener(addr netip.AddrPort) (int, error) {
	family := Family(addr)
	fd, err := Socket(family)
	s.narrate("socket(%s, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC, IPPROTO_TCP)", fd, err, familyName(family))
	if err != nil {
		return -1, fmt.Errorf("listen on %s: %w", addr, err)
	}
	step := func(err error, format string, args ...any) error {
		s.narrate(format, 0, err, args...)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		return nil
	}
	if err := step(SetReuseAddr(fd), "setsockopt(%d, SOL_SOCKET, SO_REUSEADDR, 1)", fd); err != nil {
		return -1, err
	}
	if s.cfg.ReusePort {
		if err := step(SetReusePort(fd), "setsockopt(%d, SOL_SOCKET, SO_REUSEPORT, 1)", fd); err != nil {
			return -1, err
		}
	}
	if err := step(Bind(fd, addr), "bind(%d, %s)", fd, addr); err != nil {
		return -1, err
	}
	if err := step(Listen(fd, s.cfg.Backlog), "listen(%d, %d)", fd, s.cfg.Backlog); err != nil {
		return -1, err
	}
	if q, err := AcceptQueueOf(fd); err == nil && s.cfg.Log != nil {
		somax, _ := Sysctl("net.core.somaxconn")
		s.cfg.Log.Printf("  the accept queue holds up to %d (TCP_INFO tcpi_sacked; backlog %d, net.core.somaxconn %s)", q.Max, s.cfg.Backlog, somax)
	}
	return fd, nil
}

// --8<-- [end:openlistener]

// --8<-- [end:new]

// narrate prints one system call as strace would: the call, then "= result" or "= -1 ERRNO".
func (s *Server) narrate(format string, result int, err error, args ...any) {
	if s.cfg.Log == nil {
		return
	}
	call := fmt.Sprintf(format, args...)
	if err != nil {
		s.cfg.Log.Printf("%s = -1 %s (%v)", call, ErrnoName(err), errors.Unwrap(err))
		return
	}
	s.cfg.Log.Printf("%s = %d", call, result)
}

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
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := l.run(); err != nil {
					mu.Lock()
					s.serveErr = errors.Join(s.serveErr, err)
					mu.Unlock()
				}
			}()
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

// --8<-- [start:shutdown]

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
		l.wakeup()
	}
	// Each loop takes the listeners out of its epoll set before they are closed, so no
	// loop is inside accept4 on a descriptor number that is being reused.
	s.listenersOff.Wait()
	s.closeListeners()
	select {
	case <-s.done:
	case <-ctx.Done():
		s.deadline.Store(0)
		for _, l := range s.loops {
			l.wakeup()
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

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	closed := false
	for i, fd := range s.listeners {
		if fd >= 0 {
			s.narrate("close(%d)", 0, unix.Close(fd), fd)
			s.listeners[i] = -1
			closed = true
		}
	}
	if s.cfg.Log != nil && closed {
		s.cfg.Log.Printf("  the listener is gone: a connect is refused now (RST), and connections still in its accept queue were reset")
	}
}

func (s *Server) closeAll() {
	s.closeListeners()
	for _, l := range s.loops {
		l.close()
	}
	s.adm.spareMu.Lock()
	if s.adm.spare >= 0 {
		unix.Close(s.adm.spare)
		s.adm.spare = -1
	}
	s.adm.spareMu.Unlock()
}

// Stats is a snapshot for the SIGUSR1 line and the tests.
type Stats struct {
	Open                            int64  // connections held now
	Accepted, Closed, Shed, Refused uint64 // since start
	// Resets counts connections the peer ended with RST (ECONNRESET, or EPIPE on a write),
	// since start: a flood of them is this number, not a flood of log lines.
	Resets          uint64
	Descriptors     int    // open descriptors of the process (/proc/self/fd)
	DescriptorLimit uint64 // RLIMIT_NOFILE, soft
	Queue           AcceptQueue
}

func (s *Server) Stats() Stats {
	st := Stats{Open: s.adm.open.Load(), Accepted: s.adm.accepted.Load(), Closed: s.adm.closed.Load(),
		Shed: s.adm.shed.Load(), Refused: s.adm.refused.Load(), Resets: s.adm.resets.Load()}
	st.Descriptors, _ = OpenDescriptors()
	st.DescriptorLimit, _, _ = DescriptorLimit()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fd := range s.listeners {
		if fd < 0 {
			continue
		}
		if q, err := AcceptQueueOf(fd); err == nil {
			st.Queue.Len += q.Len
			st.Queue.Max += q.Max
		}
	}
	return st
}

func (st Stats) String() string {
	return fmt.Sprintf("open %d (accepted %d, closed %d, shed %d, refused %d, reset %d); descriptors %d/%d; accept queue %d/%d",
		st.Open, st.Accepted, st.Closed, st.Shed, st.Refused, st.Resets, st.Descriptors, st.DescriptorLimit, st.Queue.Len, st.Queue.Max)
}

func (s *Server) opened(c *Conn) {
	if s.cfg.LogConns && s.cfg.Log != nil {
		local, _ := LocalAddr(c.fd)
		s.cfg.Log.Printf("accept4 = %d: tcp %s -> %s", c.fd, local, c.peer)
	}
}

func (s *Server) closing(c *Conn, err error) {
	// ECONNRESET: the peer's RST arrived. EPIPE: a write after it, once the kernel had
	// reported the reset to an earlier call. Either way the peer is gone without a FIN.
	reset := errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
	if reset {
		s.adm.resets.Add(1)
	}
	switch {
	case s.cfg.Log == nil:
	case s.cfg.LogConns:
		local, _ := LocalAddr(c.fd)
		s.cfg.Log.Printf("close(%d): tcp %s -> %s: %s", c.fd, local, c.peer, closeReason(c, err))
	case reset:
		s.logEvery(&s.rlReset, "reset by %s: %s; the stats line counts them", c.peer, closeReason(c, err))
	}
}

func closeReason(c *Conn, err error) string {
	switch {
	case err != nil:
		// A read or write fails with a bare unix.Errno, shutdown with an *os.SyscallError
		// around one: As finds it in both (Unwrap of a bare Errno is nil).
		var errno unix.Errno
		if errors.As(err, &errno) {
			return unix.ErrnoName(errno) + " (" + errno.Error() + ")"
		}
		return err.Error()
	case c.state&stPeerDone != 0:
		return "the peer sent FIN; so do we"
	}
	return "closed by the server"
}

// rateLog lets one line a second through for a kind of event and counts the rest, so a
// flood of sheds or resets is a counter, not a flood of log lines.
type rateLog struct {
	mu      sync.Mutex
	next    time.Time
	dropped int
}

func (s *Server) logEvery(r *rateLog, format string, args ...any) {
	if s.cfg.Log == nil {
		return
	}
	r.mu.Lock()
	now := time.Now()
	if now.Before(r.next) {
		r.dropped++
		r.mu.Unlock()
		return
	}
	dropped := r.dropped
	r.dropped, r.next = 0, now.Add(time.Second)
	r.mu.Unlock()
	if dropped > 0 {
		format += fmt.Sprintf(" (and %d more like it in the last second)", dropped)
	}
	s.cfg.Log.Printf(format, args...)
}
