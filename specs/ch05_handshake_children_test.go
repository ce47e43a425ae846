//go:build linux

package specs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/testkit"
	"portproof/refserver"
	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// The sandbox children of chapter 5. Each runs in a process of its own, in a network
// namespace of its own (lab.RegisterChild), so that its packet capture sees only its own
// traffic and its RLIMIT_NOFILE binds no one else. They return what the kernel answered;
// the specs in ch05_handshake_test.go assert on it.

const (
	// ch5EmfileNoFile is RLIMIT_NOFILE for the EMFILE proof: room for the runtime, the
	// listener, the capture, an epoll instance and one client, and a few to fill.
	ch5EmfileNoFile = 32
	// ch5EpollRounds is how many epoll_wait calls in a row must report the listener.
	ch5EpollRounds = 5
	// ch5SpinFor is how long the busy loop of the EMFILE proof runs, to measure its CPU;
	// ch5SpinTimeout is the timeout of each of its epoll_wait calls, far longer.
	ch5SpinFor     = 200 * time.Millisecond
	ch5SpinTimeout = time.Second
	// ch5ShedNoFile is RLIMIT_NOFILE for refserver in the shedding proof, shared with its
	// clients: the table runs out after a dozen connections.
	ch5ShedNoFile = 40
	// ch5ShedFill is how many clients must be shed before the CPU window opens.
	ch5ShedFill = 3
	// ch5WindowKnocks clients arrive at the full table during the CPU window, one every
	// ch5WindowStep: about a second in all.
	ch5WindowKnocks = 10
	ch5WindowStep   = 100 * time.Millisecond
	// ch5CaptureWithin bounds a wait for segments the proof knows are coming; on lo they
	// come within microseconds, and a delayed ACK within 200 ms.
	ch5CaptureWithin = 2 * time.Second
)

// ch5Err is e as an error: nil for no errno.
func ch5Err(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// ch5CPUTime is the CPU the process has used so far, user and system, every thread
// (getrusage RUSAGE_SELF).
func ch5CPUTime() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, os.NewSyscallError("getrusage", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// ch5ErrnoOf is the errno err carries, 0 for none.
func ch5ErrnoOf(err error) unix.Errno {
	var e unix.Errno
	errors.As(err, &e)
	return e
}

// ch5CaptureUntil reads the capture until done says the segments so far are enough, at most
// within; it keeps the segments keep accepts.
func ch5CaptureUntil(c *lab.Capture, keep func(evidence.Segment) bool, done func([]evidence.Segment) bool, within time.Duration) ([]evidence.Segment, error) {
	deadline := time.Now().Add(within)
	var segs []evidence.Segment
	for range 10000 {
		left := time.Until(deadline)
		if done(segs) || left <= 0 {
			break
		}
		got, err := c.Read(1, left)
		if err != nil {
			return segs, err
		}
		for _, s := range got {
			if keep(s) {
				segs = append(segs, s)
			}
		}
	}
	if !done(segs) {
		return segs, fmt.Errorf("capture: the expected segments did not come within %v; got %v", within, segs)
	}
	return segs, nil
}

func ch5Any(evidence.Segment) bool { return true }

// ch5Closers is what a child closes once its proof is done, as defers would: last first.
type ch5Closers []func()

func (c *ch5Closers) add(f func()) { *c = append(*c, f) }

func (c *ch5Closers) close() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

// ch5BeforeAcceptSeen is what the handshake.before-accept child observed. Its times are
// time.Now's wall clock, CLOCK_REALTIME, the clock the kernel stamps captured segments with
// (SO_TIMESTAMPNS): the spec puts the calls and the segments on one timeline as they are.
type ch5BeforeAcceptSeen struct {
	Listener, Client netip.AddrPort
	Segments         []evidence.Segment // from connect to just before accept4
	ConnectReturned  time.Time          // as sock.Connect returned: the handshake done, for the client
	WriteReturned    time.Time
	AcceptAt         time.Time // just before accept4
	Written          int       // write's return
	Payload          []byte
	ClientState      string // TCP_INFO on the client before accept
	ClientUnacked    int    // SIOCOUTQ on the client: bytes not yet acknowledged
	QueueBefore      sock.AcceptQueue
	QueueAfter       sock.AcceptQueue
	Peer             netip.AddrPort // accept4's peer address
	Read             []byte         // the accepted socket's first read
	ReadAgain        unix.Errno     // a second recv(MSG_DONTWAIT)
}

// --8<-- [start:handshake-before-accept-child]
var ch5BeforeAccept = lab.RegisterChild("ch5.handshake.before-accept", ch5BeforeAcceptChild)

// ch5BeforeAcceptChild is the handshake.before-accept proof, in order: listen, start the
// capture, connect, write, read the capture, and only then accept.
func ch5BeforeAcceptChild(loopback string) (ch5BeforeAcceptSeen, error) {
	var seen ch5BeforeAcceptSeen
	at := netip.AddrPortFrom(netip.MustParseAddr(loopback), 0)
	l, addr, capture, err := lab.ListenCaptured(at, 8)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	defer capture.Close()
	seen.Listener = addr

	client, err := lab.DialTo(addr)
	if err != nil {
		return seen, err
	}
	defer unix.Close(client)
	// connect has returned: as far as the client knows, the connection is open.
	seen.ConnectReturned = time.Now()
	if seen.Client, err = sock.LocalAddr(client); err != nil {
		return seen, err
	}
	// The client writes at once, to a server that has not accepted: write(2) copies the
	// bytes into the client's send buffer and TCP sends them to the listener's child socket.
	seen.Payload = []byte("sent before accept()")
	if seen.Written, err = unix.Write(client, seen.Payload); err != nil {
		return seen, os.NewSyscallError("write", err)
	}
	seen.WriteReturned = time.Now()
	// SYN, SYN-ACK, ACK, the data, and the server kernel's ACK of it.
	if seen.Segments, err = capture.Read(5, ch5CaptureWithin); err != nil {
		return seen, err
	}
	if seen.ClientState, err = sock.TCPState(client); err != nil {
		return seen, err
	}
	// SIOCOUTQ: what the client's send queue still holds, sent or not, until acknowledged.
	// The capture hands over the server's ACK as lo receives it, a moment before tcp_ack
	// frees the client's queue: ask again until it is empty, at most ch5CaptureWithin.
	for deadline := time.Now().Add(ch5CaptureWithin); ; time.Sleep(100 * time.Microsecond) {
		if seen.ClientUnacked, err = unix.IoctlGetInt(client, unix.SIOCOUTQ); err != nil {
			return seen, os.NewSyscallError("ioctl SIOCOUTQ", err)
		}
		if seen.ClientUnacked == 0 || time.Now().After(deadline) {
			break
		}
	}
	if seen.QueueBefore, err = sock.AcceptQueueOf(l); err != nil {
		return seen, err
	}

	// Only now does the server take the connection.
	seen.AcceptAt = time.Now()
	s, peer, err := sock.Accept(l)
	if err != nil {
		return seen, err
	}
	defer unix.Close(s)
	seen.Peer = peer
	if seen.QueueAfter, err = sock.AcceptQueueOf(l); err != nil {
		return seen, err
	}
	// The data is in the accepted socket's receive queue already: no wait.
	buf := make([]byte, 2*len(seen.Payload))
	n, err := unix.Read(s, buf)
	if err != nil {
		return seen, os.NewSyscallError("read", err)
	}
	seen.Read = buf[:n]
	_, _, err = unix.Recvfrom(s, buf, unix.MSG_DONTWAIT)
	seen.ReadAgain = ch5ErrnoOf(err)
	return seen, nil
}

// --8<-- [end:handshake-before-accept-child]

// ch5EmfileSeen is what the handshake.emfile-queued child observed.
type ch5EmfileSeen struct {
	Listener, Client netip.AddrPort
	Limit            uint64     // RLIMIT_NOFILE soft, read back
	Filled           int        // descriptors opened to fill the table
	FillErr          unix.Errno // what the open that did not fit got
	FirstAcceptAt    time.Time
	AcceptErr        unix.Errno
	QueueBefore      sock.AcceptQueue
	QueueAfterEMFILE sock.AcceptQueue
	ClientState      string
	RecvErr          unix.Errno // recv(MSG_DONTWAIT) on the client while the server cannot accept
	RecvN            int
	Epoll            []evidence.EpollRound
	Spin             evidence.BusyLoop  // the same epoll_wait and accept4, left to loop
	Marker           []byte             // sent by the client after the failed accepts
	MarkerAt         time.Time          // when its write returned
	AcceptedAt       time.Time          // just before the accept4 that succeeded
	Segments         []evidence.Segment // from connect to the server kernel's ACK of Marker
	Freed            int                // the descriptor closed to make room
	AcceptedFD       int
	Peer             netip.AddrPort
	QueueAfterAccept sock.AcceptQueue
	Read             []byte // the accepted socket's first read
}

// --8<-- [start:handshake-emfile-queued-child]
var ch5EmfileQueued = lab.RegisterChild("ch5.handshake.emfile-queued", ch5EmfileChild)

// ch5EmfileChild is the handshake.emfile-queued proof: a client queued, the descriptor table
// filled, accept4 tried and the busy loop run, then one descriptor freed.
func ch5EmfileChild(loopback string) (ch5EmfileSeen, error) {
	p := &ch5Emfile{}
	defer p.closers.close()
	// The proof, step by step; each keeps what the kernel answered in p.seen.
	for _, step := range []func() error{
		func() error { return p.listenWatched(loopback) },
		p.queueClient,
		p.fillTable,
		p.acceptAtEMFILE,
		p.pollRounds,
		p.spin,
		p.sendLateByte,
		p.freeOneAndAccept,
	} {
		if err := step(); err != nil {
			return p.seen, err
		}
	}
	return p.seen, nil
}

// ch5Emfile is the EMFILE proof under way: a listener watched by epoll, its port captured,
// one client in its queue, the descriptors that fill the table, and what was seen so far.
type ch5Emfile struct {
	seen    ch5EmfileSeen
	l, epfd int // the listener, and the epoll instance that watches it
	client  int
	capture *lab.Capture
	fillers []int // /dev/null, opened until the table was full
	closers ch5Closers
}

// listenWatched reads RLIMIT_NOFILE back, listens on loopback, captures the listener's port,
// and watches the listener with level-triggered epoll (no EPOLLET): epoll reports it for as
// long as its accept queue is not empty, not once per new connection.
func (p *ch5Emfile) listenWatched(loopback string) error {
	var err error
	if p.seen.Limit, _, err = sock.DescriptorLimit(); err != nil {
		return err
	}
	at := netip.AddrPortFrom(netip.MustParseAddr(loopback), 0)
	l, addr, capture, err := lab.ListenCaptured(at, 8)
	if err != nil {
		return err
	}
	p.closers.add(func() { unix.Close(l) })
	p.closers.add(func() { capture.Close() })
	p.l, p.seen.Listener, p.capture = l, addr, capture
	if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	p.closers.add(func() { unix.Close(p.epfd) })
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, l, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

// queueClient connects the one client, and waits until its connection is in the accept
// queue.
func (p *ch5Emfile) queueClient() error {
	client, err := lab.DialTo(p.seen.Listener)
	if err != nil {
		return err
	}
	p.closers.add(func() { unix.Close(client) })
	p.client = client
	if p.seen.Client, err = sock.LocalAddr(client); err != nil {
		return err
	}
	// connect returns on the SYN-ACK; the final ACK that queues the connection may still be
	// on its way to the listener.
	if err := lab.WaitFor(p.l, unix.POLLIN, lab.AcceptWithin); err != nil {
		return err
	}
	p.seen.QueueBefore, err = sock.AcceptQueueOf(p.l)
	return err
}

// fillTable fills the descriptor table: open takes the lowest free number, and fails with
// EMFILE once none is left below RLIMIT_NOFILE.
func (p *ch5Emfile) fillTable() error {
	p.closers.add(func() { lab.CloseAll(p.fillers) })
	for range p.seen.Limit {
		fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			p.seen.FillErr = ch5ErrnoOf(err)
			break
		}
		p.fillers = append(p.fillers, fd)
	}
	p.seen.Filled = len(p.fillers)
	if len(p.fillers) == 0 {
		return fmt.Errorf("the table was full before the proof filled it (%s)",
			ch5ErrnoName(p.seen.FillErr))
	}
	return nil
}

// acceptAtEMFILE calls accept4 on the full table, then reads the queue and the client: what
// the kernel did with the connection it had no number for.
func (p *ch5Emfile) acceptAtEMFILE() error {
	p.seen.FirstAcceptAt = time.Now()
	_, _, err := sock.Accept(p.l)
	p.seen.AcceptErr = ch5ErrnoOf(err)
	if p.seen.QueueAfterEMFILE, err = sock.AcceptQueueOf(p.l); err != nil {
		return err
	}
	if p.seen.ClientState, err = sock.TCPState(p.client); err != nil {
		return err
	}
	buf := make([]byte, 64)
	p.seen.RecvN, _, err = unix.Recvfrom(p.client, buf, unix.MSG_DONTWAIT)
	p.seen.RecvErr = ch5ErrnoOf(err)
	return nil
}

// pollRounds is a loop that waits on epoll and retries accept: the kernel reports the
// listener every time, and every accept4 fails again. epoll_wait with timeout 0 never
// sleeps.
func (p *ch5Emfile) pollRounds() error {
	events := make([]unix.EpollEvent, 4)
	for range ch5EpollRounds {
		n, err := unix.EpollWait(p.epfd, events, 0)
		if err != nil {
			return os.NewSyscallError("epoll_wait", err)
		}
		r := evidence.EpollRound{Ready: n}
		for _, ev := range events[:n] {
			r.Listener = r.Listener || (int(ev.Fd) == p.l && ev.Events&unix.EPOLLIN != 0)
		}
		_, _, err = sock.Accept(p.l)
		r.AcceptErrno = ch5ErrnoName(ch5ErrnoOf(err))
		p.seen.Epoll = append(p.seen.Epoll, r)
	}
	return nil
}

// spin leaves the same loop to run, as a server without a spare descriptor would:
// epoll_wait may sleep up to ch5SpinTimeout, and would return 0 if it did. For ch5SpinFor
// the proof counts what each call answered, and getrusage measures the CPU it took.
func (p *ch5Emfile) spin() error {
	s := &p.seen.Spin
	*s = evidence.BusyLoop{
		CPUWindow: evidence.CPUWindow{Loop: "epoll_wait + accept4, nothing shed"},
		TimeoutMS: ch5SpinTimeout.Milliseconds(), AcceptOther: map[string]int{}}
	events := make([]unix.EpollEvent, 4)
	cpu0, err := ch5CPUTime()
	if err != nil {
		return err
	}
	start := time.Now()
	for time.Since(start) < ch5SpinFor && s.EpollWaits < 10_000_000 {
		if err := p.spinOnce(events); err != nil {
			return err
		}
	}
	cpu1, err := ch5CPUTime()
	if err != nil {
		return err
	}
	s.Measured(time.Since(start), cpu1-cpu0)
	return nil
}

// spinOnce is one turn of the busy loop: an epoll_wait, then an accept4, each answer counted.
func (p *ch5Emfile) spinOnce(events []unix.EpollEvent) error {
	s := &p.seen.Spin
	n, err := unix.EpollWait(p.epfd, events, int(s.TimeoutMS))
	s.EpollWaits++
	switch {
	case errors.Is(err, unix.EINTR):
		s.Interrupted++
	case err != nil:
		return os.NewSyscallError("epoll_wait", err)
	case n == 0:
		s.TimedOut++
	case n == 1 && int(events[0].Fd) == p.l && events[0].Events&unix.EPOLLIN != 0:
		s.ListenerReady++
	}
	fd, _, err := sock.Accept(p.l)
	switch {
	case err == nil:
		unix.Close(fd)
		s.AcceptOther["none"]++
	case errors.Is(err, unix.EMFILE):
		s.AcceptEMFILE++
	default:
		s.AcceptOther[ch5ErrnoName(ch5ErrnoOf(err))]++
	}
	return nil
}

// sendLateByte has the client send a byte after all this. The server kernel's ACK of it is
// the last segment the capture needs: whatever the failed accepts had sent is before it on lo.
func (p *ch5Emfile) sendLateByte() error {
	p.seen.Marker = []byte("!")
	if _, err := unix.Write(p.client, p.seen.Marker); err != nil {
		return os.NewSyscallError("write", err)
	}
	p.seen.MarkerAt = time.Now()
	acked := func(segs []evidence.Segment) bool {
		for _, s := range segs {
			if s.Src == p.seen.Listener && s.Dst == p.seen.Client && s.Flags == "ACK" &&
				s.Ack == uint32(1+len(p.seen.Marker)) {
				return true
			}
		}
		return false
	}
	var err error
	p.seen.Segments, err = ch5CaptureUntil(p.capture, ch5Any, acked, ch5CaptureWithin)
	return err
}

// freeOneAndAccept frees one descriptor; the next accept4 has a number to give, and hands
// over the connection that waited.
func (p *ch5Emfile) freeOneAndAccept() error {
	p.seen.Freed = p.fillers[len(p.fillers)-1]
	p.fillers = p.fillers[:len(p.fillers)-1]
	if err := unix.Close(p.seen.Freed); err != nil {
		return os.NewSyscallError("close", err)
	}
	p.seen.AcceptedAt = time.Now()
	s, peer, err := sock.Accept(p.l)
	if err != nil {
		return err
	}
	p.closers.add(func() { unix.Close(s) })
	p.seen.AcceptedFD, p.seen.Peer = s, peer
	if p.seen.QueueAfterAccept, err = sock.AcceptQueueOf(p.l); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := unix.Read(s, buf)
	if err != nil {
		return os.NewSyscallError("read", err)
	}
	p.seen.Read = buf[:n]
	return nil
}

// --8<-- [end:handshake-emfile-queued-child]

// ch5LingerSeen is the contrast of the shedding proof: a connection closed with SO_LINGER
// {1, 0}.
type ch5LingerSeen struct {
	Client   netip.AddrPort
	ReadErr  unix.Errno // the client's read after the server's close
	ReadN    int
	State    string // the client's TCP state after that read
	Segments []evidence.Segment
}

// ch5ShedSeen is what the handshake.shed child observed.
type ch5ShedSeen struct {
	Server          netip.AddrPort
	Clients         []evidence.ShedClient
	Table           evidence.DescriptorTable // the table the server and its clients share
	CPU             evidence.CPUWindow
	Serving         refserver.Stats // right after the CPU window, still serving
	Stopped         refserver.Stats // after Serve returned: every loop's counting done
	Log             []string
	ShedClient      netip.AddrPort // the first client shed
	ShedClientState string
	ShedSegments    []evidence.Segment // its segments, up to the server's FIN
	Linger          ch5LingerSeen
}

// ch5Knock connects one client and reads what comes first: the server's greeting, or
// end-of-stream. The descriptor stays open when the server greeted it (the caller holds
// it), and is closed otherwise. A socket() that fails is returned as is, before any client.
func ch5Knock(to netip.AddrPort, phase string) (evidence.ShedClient, int, error) {
	c := evidence.ShedClient{Phase: phase, Read: -1}
	// The server's accept4 reserves a descriptor number before it looks at the queue
	// (get_unused_fd_flags, then EAGAIN and put_unused_fd): while the table is nearly full,
	// the client's socket() can meet EMFILE for that instant. Ask again, for at most a second.
	fd, err := sock.Socket(sock.Family(to))
	for deadline := time.Now().Add(time.Second); errors.Is(err, unix.EMFILE) && time.Now().Before(deadline); {
		c.SocketEMFILE++
		time.Sleep(100 * time.Microsecond)
		fd, err = sock.Socket(sock.Family(to))
	}
	if err != nil {
		return c, -1, err
	}
	if err := sock.Connect(fd, to, lab.ConnectWithin); err != nil {
		unix.Close(fd)
		return c, -1, err
	}
	returned := time.Now()
	local, err := sock.LocalAddr(fd)
	if err != nil {
		unix.Close(fd)
		return c, -1, err
	}
	c.Port = local.Port()
	if err := lab.WaitFor(fd, unix.POLLIN, lab.ReadWithin); err != nil {
		unix.Close(fd)
		return c, -1, err
	}
	buf := make([]byte, 512)
	n, err := unix.Read(fd, buf)
	c.AfterUS = time.Since(returned).Microseconds()
	if err != nil {
		c.Errno = ch5ErrnoName(ch5ErrnoOf(err))
	} else {
		c.Read = n
	}
	if c.State, err = sock.TCPState(fd); err != nil {
		unix.Close(fd)
		return c, -1, err
	}
	if n <= 0 {
		unix.Close(fd)
		return c, -1, nil
	}
	c.Greeting = string(buf[:n])
	t, err := sock.TupleOf(fd)
	if err != nil {
		unix.Close(fd)
		return c, -1, err
	}
	c.Tuple = t.String()
	return c, fd, nil
}

// --8<-- [start:handshake-shed-child]
var ch5Shed = lab.RegisterChild("ch5.handshake.shed", ch5ShedChild)

// ch5ShedChild is the handshake.shed proof: the SO_LINGER contrast first, while the table
// has room, then refserver serving clients until it sheds them.
func ch5ShedChild(loopback string) (ch5ShedSeen, error) {
	at := netip.AddrPortFrom(netip.MustParseAddr(loopback), 0)
	p := &ch5Shedding{}
	defer p.closers.close()
	var err error
	// The contrast first, while the table has room.
	if p.seen.Linger, err = ch5AbortiveClose(at); err != nil {
		return p.seen, err
	}
	for _, step := range []func() error{
		func() error { return p.start(at) },
		p.knockUntilShed,
		p.window,
		p.captureShed,
	} {
		if err := step(); err != nil {
			return p.seen, err
		}
	}
	// shedOne counts a shed after its close(2) has sent the FIN, so a client can read
	// end-of-stream a moment before the count moves: the counts to compare with the
	// clients' are the ones left when every loop has returned.
	err = p.stop()
	p.seen.Stopped = p.srv.Stats()
	p.seen.Log = p.logged.All()
	return p.seen, err
}

// ch5Shedding is the shedding proof under way: refserver serving in this process, its port
// captured, the clients it served (held open), and what was seen so far.
type ch5Shedding struct {
	seen    ch5ShedSeen
	srv     *refserver.Server
	logged  *testkit.Lines // refserver's log, line by line; the loop's thread writes it
	served  chan error     // what Serve returned
	stopped bool
	capture *lab.Capture
	held    []int // the clients the server greeted, kept open
	closers ch5Closers
}

// start makes refserver, captures its port, makes the number of free descriptors odd, and
// serves.
func (p *ch5Shedding) start(at netip.AddrPort) error {
	p.logged = &testkit.Lines{}
	srv, err := refserver.New(refserver.Config{Addr: at, Loops: 1, Log: log.New(p.logged, "", 0)})
	if err != nil {
		return err
	}
	p.srv, p.seen.Server = srv, srv.Addr()
	if p.capture, err = lab.StartCapture(p.seen.Server.Port()); err != nil {
		return err
	}
	p.closers.add(func() { p.capture.Close() })
	if err := p.oddTable(); err != nil {
		return err
	}
	p.served = make(chan error, 1)
	go func() { p.served <- srv.Serve() }()
	p.closers.add(func() {
		if !p.stopped {
			p.stop()
		}
	})
	return nil
}

// oddTable makes the number of free descriptors odd. Clients and server share this
// process's table, and each connection served costs two descriptors, the client's and the
// one accept4 returns. With an even number free, the server would take the last one for a
// served client and the next client's own socket() would find the table full: it could only
// succeed by taking, at the instant shedOne has closed it, the server's spare. With an odd
// number, a client's socket() takes the last free descriptor, and the server's accept4
// meets EMFILE.
func (p *ch5Shedding) oddTable() error {
	var err error
	if p.seen.Table.Limit, _, err = sock.DescriptorLimit(); err != nil {
		return err
	}
	if p.seen.Table.Open, err = lab.DescriptorsBelow(int(p.seen.Table.Limit)); err != nil {
		return err
	}
	if (int(p.seen.Table.Limit)-p.seen.Table.Open)%2 == 0 {
		pad, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("open", err)
		}
		p.closers.add(func() { unix.Close(pad) })
		p.seen.Table.Pad = true
	}
	return nil
}

// stop closes the clients held, shuts refserver down and waits for Serve to return.
func (p *ch5Shedding) stop() error {
	p.stopped = true
	lab.CloseAll(p.held)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(p.srv.Shutdown(ctx), <-p.served)
}

// knock connects one client (ch5Knock) and keeps it: held open when the server greeted it;
// the first one shed is the client whose segments the proof captures.
func (p *ch5Shedding) knock(phase string) (evidence.ShedClient, error) {
	c, fd, err := ch5Knock(p.seen.Server, phase)
	if err != nil {
		return c, err
	}
	p.seen.Clients = append(p.seen.Clients, c)
	if fd >= 0 {
		p.held = append(p.held, fd)
	} else if c.Read == 0 && !p.seen.ShedClient.IsValid() {
		p.seen.ShedClient = netip.AddrPortFrom(p.seen.Server.Addr(), c.Port)
		p.seen.ShedClientState = c.State
	}
	return c, nil
}

// knockUntilShed connects clients until the server has run out of descriptors and shed
// ch5ShedFill of them.
func (p *ch5Shedding) knockUntilShed() error {
	shed := 0
	for range 2 * ch5ShedNoFile {
		if shed == ch5ShedFill {
			break
		}
		c, err := p.knock("fill")
		if err != nil {
			return fmt.Errorf("client %d: %w; %s; refserver said: %q",
				len(p.seen.Clients)+1, err, p.srv.Stats(), p.logged.All())
		}
		if c.Errno != "" {
			return fmt.Errorf("client %d (port %d): read: %s; refserver said: %q",
				len(p.seen.Clients), c.Port, c.Errno, p.logged.All())
		}
		if c.Read == 0 {
			shed++
		}
	}
	if shed < ch5ShedFill {
		return fmt.Errorf("%d clients, %d shed: the server never ran out of descriptors",
			len(p.seen.Clients), shed)
	}
	return nil
}

// window: clients keep arriving at a full table while the served ones wait, and the
// process's CPU time (getrusage: every thread, user and system) is measured over it.
func (p *ch5Shedding) window() error {
	p.seen.CPU.Loop = "refserver, shedding"
	cpu0, err := ch5CPUTime()
	if err != nil {
		return err
	}
	start := time.Now()
	tick := time.NewTicker(ch5WindowStep)
	for range ch5WindowKnocks {
		<-tick.C
		if _, err := p.knock("window"); err != nil {
			tick.Stop()
			return err
		}
	}
	tick.Stop()
	cpu1, err := ch5CPUTime()
	if err != nil {
		return err
	}
	p.seen.CPU.Measured(time.Since(start), cpu1-cpu0)
	p.seen.Serving = p.srv.Stats()
	return nil
}

// captureShed reads the first shed client's segments from the capture, up to the server's
// FIN.
func (p *ch5Shedding) captureShed() error {
	shedPort := p.seen.ShedClient.Port()
	mine := func(s evidence.Segment) bool {
		return s.Src.Port() == shedPort || s.Dst.Port() == shedPort
	}
	finned := func(segs []evidence.Segment) bool {
		for _, s := range segs {
			if s.Dst.Port() == shedPort && strings.Contains(s.Flags, "FIN") {
				return true
			}
		}
		return false
	}
	var err error
	p.seen.ShedSegments, err = ch5CaptureUntil(p.capture, mine, finned, ch5CaptureWithin)
	return err
}

// ch5AbortiveClose accepts a connection with sock.Accept and closes it with SO_LINGER
// {1, 0}, which refserver never sets, and reports what its client read.
func ch5AbortiveClose(at netip.AddrPort) (ch5LingerSeen, error) {
	var seen ch5LingerSeen
	l, addr, capture, err := lab.ListenCaptured(at, 8)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	defer capture.Close()
	client, err := lab.DialTo(addr)
	if err != nil {
		return seen, err
	}
	defer unix.Close(client)
	if seen.Client, err = sock.LocalAddr(client); err != nil {
		return seen, err
	}
	s, _, err := lab.AcceptOn(l, lab.AcceptWithin)
	if err != nil {
		return seen, err
	}
	// Linger on, for 0 seconds: close(2) does not send FIN, it aborts the connection
	// (tcp_close -> tcp_disconnect), and the kernel sends RST.
	abort := unix.Linger{Onoff: 1, Linger: 0}
	if err := unix.SetsockoptLinger(s, unix.SOL_SOCKET, unix.SO_LINGER, &abort); err != nil {
		unix.Close(s)
		return seen, os.NewSyscallError("setsockopt SO_LINGER", err)
	}
	if err := unix.Close(s); err != nil {
		return seen, os.NewSyscallError("close", err)
	}
	if err := lab.WaitFor(client, unix.POLLIN, lab.ReadWithin); err != nil {
		return seen, err
	}
	buf := make([]byte, 64)
	seen.ReadN, err = unix.Read(client, buf)
	seen.ReadErr = ch5ErrnoOf(err)
	if seen.State, err = sock.TCPState(client); err != nil {
		return seen, err
	}
	reset := func(segs []evidence.Segment) bool {
		for _, s := range segs {
			if strings.Contains(s.Flags, "RST") {
				return true
			}
		}
		return false
	}
	seen.Segments, err = ch5CaptureUntil(capture, ch5Any, reset, ch5CaptureWithin)
	return seen, err
}

// --8<-- [end:handshake-shed-child]
