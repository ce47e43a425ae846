//go:build linux

package refserver

import (
	"encoding/binary"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// loop is one epoll instance and the goroutine that waits on it. A connection lives its
// whole life on the loop that accepted it, from accept4 to close, so nothing here needs a
// lock. The loop hands what happens one way: to the admission policy (accept.go), to the
// Handler (handler.go), to the counters (stats.go) and to the log (log.go).
type loop struct {
	id  int
	srv *Server
	// epfd is the epoll instance: one descriptor whose readiness list the kernel keeps for
	// every socket registered with it, so one epoll_wait serves thousands of connections.
	epfd int
	// wakefd is an eventfd in the epoll set; wake writes it so that epoll_wait returns.
	wakefd int
	// listener is the passive socket this loop accepts from: the server's one listener,
	// shared by every loop, or with SO_REUSEPORT a listener of the loop's own.
	listener int
	// watching says whether the listener is in the epoll set. It leaves it on EMFILE
	// when no spare descriptor is left (see accept.go) and at shutdown.
	watching bool
	// resumeAt is when a paused listener goes back into the epoll set (loop clock).
	resumeAt int64
	// conns is indexed by descriptor: the kernel hands out the lowest free number, so the
	// slice stays dense and a lookup is one index, not a map probe.
	conns []*Conn
	// nconns counts conns' entries, so a draining loop knows it is done without a scan.
	nconns int
	// buf is the one read buffer of the loop: a read goes into it and the Handler sees it;
	// nothing is kept per connection unless the Handler leaves input or the peer is slow to
	// read what we write.
	buf []byte
	// pend gathers what the callback running now writes to pendConn, so that it goes out
	// in one write(2) when the callback returns, however many Writes made it.
	pend     []byte
	pendConn *Conn
	// again lists connections with input the Handler left after making progress, or put
	// off while its output backed up: they get it again without waiting for a read, since
	// their peer may have sent everything already and be waiting for answers.
	again []*Conn
	// parked lists connections taken out of epoll while the budget has reading paused.
	parked []*Conn
	// state is the Handler's per-loop value (LoopStater), for Conn.LoopState.
	state  any
	events []unix.EpollEvent
	// tasks are Execute's functions, posted from other goroutines; taskMu guards them and
	// stopped, which says the loop has returned and will run no more.
	taskMu  sync.Mutex
	tasks   []task
	stopped bool
	// now is the clock read once per epoll_wait return; connections take their
	// timestamps from it instead of calling time.Now per read.
	now int64
	// idleHead and idleTail thread every Conn by last activity, least recent first.
	idleHead, idleTail *Conn
	// draining is set once the loop has seen Shutdown (or died): it accepts no more, and
	// run returns when nconns reaches 0.
	draining bool
}

const (
	readBufferSize = 64 << 10 // one read(2) at most; also the most a loop reads before answering
	eventBatch     = 256      // events taken per epoll_wait
	// pendSize is what a callback's Writes may gather; directWrite is the size from which
	// a Write skips the gathering and goes out from the caller's own slice, as bufio does.
	pendSize    = 64 << 10
	directWrite = 16 << 10
	// minInput is the least room a read into a connection's own input buffer gets.
	minInput = 4 << 10
	// acceptBatch bounds the accepts of one wake-up, so that a flood of new connections
	// cannot starve the loop's established ones.
	acceptBatch = 64
	// listenerPause is how long a loop stops watching the listener when it can neither
	// accept nor shed (no spare descriptor): long enough not to spin, short enough to serve
	// again soon.
	listenerPause = 50 * time.Millisecond
)

func newLoop(id int, srv *Server, listener int) (*loop, error) {
	l := &loop{id: id, srv: srv, epfd: -1, wakefd: -1, listener: listener,
		buf: make([]byte, readBufferSize), pend: make([]byte, 0, pendSize),
		events: make([]unix.EpollEvent, eventBatch)}
	if ls, ok := srv.cfg.Handler.(LoopStater); ok {
		l.state = ls.NewLoopState(id)
	}
	var err error
	if l.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if l.wakefd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		l.close()
		return nil, os.NewSyscallError("eventfd", err)
	}
	if err = l.ctl(unix.EPOLL_CTL_ADD, l.wakefd, unix.EPOLLIN); err != nil {
		l.close()
		return nil, err
	}
	if err = l.watchListener(true); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *loop) ctl(op, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	return os.NewSyscallError("epoll_ctl", unix.EpollCtl(l.epfd, op, fd, &ev))
}

// --8<-- [start:listenerevents]

// watchListener puts the listener into the epoll set or takes it out.
func (l *loop) watchListener(on bool) error {
	if on == l.watching {
		return nil
	}
	var err error
	if on {
		// Level-triggered: the listener stays readable while its accept queue is not
		// empty, so a connection left in the queue is reported again. EPOLLEXCLUSIVE:
		// when loops share one listener, the kernel wakes "one or more" of them per
		// connection (epoll(7)), rather than every one (the thundering herd, Linux 4.5+).
		ev := uint32(unix.EPOLLIN)
		if !l.srv.cfg.ReusePort {
			ev |= unix.EPOLLEXCLUSIVE
		}
		err = l.ctl(unix.EPOLL_CTL_ADD, l.listener, ev)
	} else {
		err = l.ctl(unix.EPOLL_CTL_DEL, l.listener, 0)
	}
	if err != nil {
		return err
	}
	l.watching = on
	return nil
}

// --8<-- [end:listenerevents]

// --8<-- [start:run]

// run is the event loop: wait, dispatch, expire, repeat, until a shutdown has drained
// every connection of the loop.
func (l *loop) run() error {
	defer l.stop()
	// --8<-- [start:epoll-wait]
	for {
		n, err := unix.EpollWait(l.epfd, l.events, l.timeout())
		if err != nil && err != unix.EINTR {
			if !l.draining {
				// Shutdown waits for every loop to let go of the listeners; a dead loop
				// lets go too, or Shutdown would wait forever.
				l.draining = true
				l.srv.listenersOff.Done()
			}
			return os.NewSyscallError("epoll_wait", err)
		}
		l.now = time.Now().UnixNano()
		for _, ev := range l.events[:max(n, 0)] {
			fd := int(ev.Fd)
			switch {
			case fd == l.wakefd:
				l.onWake()
			case fd == l.listener:
				l.acceptQueued()
			case fd < len(l.conns) && l.conns[fd] != nil:
				l.serve(l.conns[fd], ev.Events)
			}
		}
		l.handOverAgain()
		l.expire()
		if l.draining && l.nconns == 0 {
			return nil
		}
	}
	// --8<-- [end:epoll-wait]
}

// --8<-- [start:serve]

// serve handles one connection's readiness. Output first: a connection in backpressure is
// registered for EPOLLOUT only, and reading resumes once what it owes the peer is sent.
func (l *loop) serve(c *Conn, events uint32) {
	if len(c.outBuf()) > 0 && events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		if c.flush() && len(c.inBuf()) > 0 {
			l.handBack(c) // requests put off while the output backed up
		}
	}
	if len(c.outBuf()) == 0 && events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		l.read(c)
	}
	l.settle(c)
}

// --8<-- [end:serve]

// --8<-- [end:run]

// --8<-- [start:read]

func (l *loop) read(c *Conn) {
	buf, kept := l.buf, len(c.inBuf())
	if kept > 0 {
		// Input the Handler left: read behind it, into the connection's own buffer.
		if !c.growInput() {
			c.fail(ErrInputLimit)
			return
		}
		in := c.inBuf()
		buf = in[kept:cap(in)]
	}
	if c.drainLeft > 0 {
		buf = buf[:min(len(buf), c.drainLeft)] // no further than what came before the drain
	}
	// --8<-- [start:read-once]
	n, err := sock.Read(c.fd, buf)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		// Another loop cannot have taken it, but a wake-up without data is legal.
	case err != nil:
		c.fail(err) // ECONNRESET: the peer sent RST; ETIMEDOUT: retransmissions gave up
	case n == 0:
		// End of stream: the peer's FIN. Whatever we still owe it is sent, then we close,
		// and the kernel sends our FIN.
		c.state |= stPeerDone | stClosing
	case c.state&stWrShut != 0:
		c.lastActive = l.now // we already said goodbye; the peer's late bytes are read and dropped
	default:
		c.lastActive = l.now
		if c.drainLeft > 0 {
			if c.drainLeft -= n; c.drainLeft == 0 {
				c.state |= stClosing
			}
		}
		if kept > 0 {
			buf = c.inBuf()[:kept+n]
			c.setIn(buf)
		}
		l.deliver(c, buf[:kept+n])
	}
	// --8<-- [end:read-once]
}

// --8<-- [end:read]

// --8<-- [start:deliver]

// deliver hands input to the Handler and keeps what it leaves: at the front of the
// connection's own buffer, or copied out of the loop's, which the next read reuses.
func (l *loop) deliver(c *Conn, in []byte) {
	used := min(max(l.srv.cfg.Handler.OnData(c, in), 0), len(in))
	l.flushPending()
	rest := in[used:]
	switch kept := c.inBuf(); {
	case len(rest) == 0:
		c.setIn(nil) // an idle connection holds no input buffer
	case len(kept) > 0:
		c.setIn(kept[:copy(kept, rest)])
	default:
		room := min(max(2*len(rest), minInput), l.srv.cfg.MaxInput)
		c.setIn(append(make([]byte, 0, room), rest...))
	}
	if len(c.inBuf()) >= l.srv.cfg.MaxInput {
		// What is kept fills MaxInput and the Handler could not use it: the message it waits
		// for is longer than that, and can never be handed over whole.
		c.fail(ErrInputLimit)
		return
	}
	if used > 0 && len(c.inBuf()) > 0 {
		// Progress with input left: more requests may be whole in it.
		l.handBack(c)
	}
}

// --8<-- [end:deliver]

// handBack puts c on the list of connections whose kept input the Handler gets again.
func (l *loop) handBack(c *Conn) {
	if c.state&stAgain == 0 {
		c.state |= stAgain
		l.again = append(l.again, c)
	}
}

// handOverAgain gives each connection on the again list its kept input once more, unless
// its output still backs up (then the drain hands it back) or the budget has reading paused.
func (l *loop) handOverAgain() {
	if len(l.again) == 0 || l.srv.budget.paused.Load() {
		return
	}
	todo := l.again
	l.again = nil
	for _, c := range todo {
		c.state &^= stAgain
		if c.state&stClosed != 0 || len(c.outBuf()) > 0 || len(c.inBuf()) == 0 {
			continue
		}
		l.deliver(c, c.inBuf())
		l.settle(c)
	}
}

// growInput makes room in the kept input for a read: at least minInput, within Config.MaxInput. It
// fails when the kept input already fills MaxInput: a message longer than that cannot be
// handed over whole, ever.
func (c *Conn) growInput() bool {
	limit, in := c.loop.srv.cfg.MaxInput, c.inBuf()
	if cap(in)-len(in) >= minInput || (cap(in) == limit && len(in) < limit) {
		return true
	}
	if len(in) >= limit {
		return false
	}
	grown := make([]byte, len(in), min(max(2*cap(in), len(in)+minInput), limit))
	copy(grown, in)
	c.setIn(grown)
	return true
}

// flushPending sends what the callback gathered for pendConn, in one write(2), and keeps
// what the socket had no room for.
func (l *loop) flushPending() {
	c, p := l.pendConn, l.pend
	l.pendConn, l.pend = nil, l.pend[:0]
	if c != nil && len(p) > 0 && c.err == nil && c.state&stClosed == 0 {
		c.send(p)
	}
}

// --8<-- [start:settle]

// settle is the loop's part after every callback: it closes what is finished (a failed
// connection at once, a closing one once its output is sent and its kept input handed
// over), registers for what the connection waits for next, and moves an active connection
// to the idle list's tail.
func (l *loop) settle(c *Conn) {
	if c.state&stClosed != 0 {
		return
	}
	// --8<-- [start:lingering]
	if c.err == nil && c.state&stClosing != 0 && len(c.outBuf()) == 0 && c.state&stAgain == 0 {
		if c.state&stPeerDone != 0 {
			l.closeConn(c, nil)
			return
		}
		if c.state&stWrShut == 0 {
			// We end first, and the peer may still be sending. close(2) on a socket with
			// unread data sends RST, and a peer that gets RST may lose the data we sent
			// before it. So: shutdown(SHUT_WR) sends FIN now, and we read and drop until the
			// peer's FIN (a lingering close), or until the idle timeout or shutdown deadline.
			if err := unix.Shutdown(c.fd, unix.SHUT_WR); err != nil {
				c.fail(os.NewSyscallError("shutdown", err))
			}
			c.state |= stWrShut
		}
	}
	// --8<-- [end:lingering]
	if c.err == nil {
		l.arm(c)
	}
	if c.err != nil {
		l.closeConn(c, c.err)
		return
	}
	if c.lastActive == l.now && l.idleTail != c {
		l.unlinkIdle(c)
		l.linkIdle(c)
	}
}

// --8<-- [end:settle]

// --8<-- [start:backpressure]

// --8<-- [start:arm]

// arm registers c for what it waits for: room in its send buffer (EPOLLOUT) while output
// waits, and reading stops meanwhile; nothing while the budget has reading paused; input
// (EPOLLIN) otherwise. epoll_ctl runs only when that changes.
func (l *loop) arm(c *Conn) {
	// --8<-- [start:arm-core]
	want, events := connState(0), uint32(unix.EPOLLIN)
	switch {
	case len(c.outBuf()) > 0:
		want, events = stWantOut, unix.EPOLLOUT
	case l.srv.budget.paused.Load():
		want, events = stParked, 0 // EPOLLERR and EPOLLHUP are reported even so
	}
	// --8<-- [end:arm-core]
	if c.state&(stWantOut|stParked) == want {
		return
	}
	if err := l.ctl(unix.EPOLL_CTL_MOD, c.fd, events); err != nil {
		c.fail(err)
		return
	}
	if want == stParked && c.state&stParked == 0 {
		l.parked = append(l.parked, c)
	}
	c.state = c.state&^(stWantOut|stParked) | want
}

// --8<-- [end:arm]

// unpark re-arms what the budget parked, once reading resumes.
func (l *loop) unpark() {
	if l.srv.budget.paused.Load() {
		return
	}
	for _, c := range l.parked {
		if c.state&stClosed == 0 {
			l.arm(c)
			if c.err != nil {
				l.closeConn(c, c.err)
			}
		}
	}
	l.parked = l.parked[:0]
}

// --8<-- [end:backpressure]

// --8<-- [start:accept]

// acceptQueued drains a readable listener: the admission policy takes the connection at the
// head of the queue and decides, until the queue is empty (EAGAIN) or the batch is done;
// level-triggered epoll reports the listener again if more wait.
func (l *loop) acceptQueued() {
	for range acceptBatch {
		if l.srv.shuttingDown() {
			// Shutdown has begun, and its wake-up may still be on its way: not one more.
			l.drain()
			return
		}
		fd, peer, v := l.srv.adm.next(l.listener)
		switch v {
		case admitted:
			l.register(fd, peer)
		case turnedAway, skipped:
		case stuck:
			// No spare to spend: leave the connection queued and stop watching the
			// listener for a moment, or level-triggered epoll would report it readable
			// again at once and the loop would spin.
			if err := l.watchListener(false); err == nil {
				l.resumeAt = l.now + int64(listenerPause)
			}
			return
		case queueEmpty, failed:
			return
		}
	}
}

// --8<-- [end:accept]

// register adopts an accepted descriptor.
func (l *loop) register(fd int, peer netip.AddrPort) {
	c := &Conn{fd: fd, loop: l, peer: peer, lastActive: l.now}
	// Its error is ignored: Linux sets TCP_NODELAY even on a connection the peer has already
	// reset (BSD answers EINVAL), and the first read reports the reset.
	sock.SetNoDelay(fd)
	if err := l.ctl(unix.EPOLL_CTL_ADD, fd, unix.EPOLLIN); err != nil {
		unix.Close(fd)
		l.srv.adm.release(peer)
		l.srv.log.every(&l.srv.log.errs, "epoll_ctl(ADD, %d): %v; connection from %s closed",
			fd, err, peer)
		return
	}
	for fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*Conn, max(len(l.conns), 64))...)
	}
	l.conns[fd] = c
	l.nconns++
	l.linkIdle(c)
	l.srv.log.opened(fd, peer)
	l.srv.cfg.Handler.OnOpen(c)
	l.flushPending()
	if l.draining {
		c.state |= stClosing
	}
	l.settle(c)
}

// closeConn releases the descriptor. close(2) also takes it out of the epoll set, since no
// other descriptor refers to the socket.
func (l *loop) closeConn(c *Conn, err error) {
	if c.state&stClosed != 0 {
		return
	}
	l.unlinkIdle(c)
	l.conns[c.fd] = nil
	l.nconns--
	reset := isReset(err)
	switch {
	case reset:
		l.srv.count.resets.Add(1)
	case err == ErrInputLimit:
		l.srv.count.inputCut.Add(1)
		l.srv.log.every(&l.srv.log.cut, "cut %s: a message longer than %d bytes (-max-input)",
			c.peer, l.srv.cfg.MaxInput)
	case err == ErrOutputLimit:
		l.srv.count.outputCut.Add(1)
		l.srv.log.every(&l.srv.log.cut, "cut %s: more than %d bytes of output queued for it "+
			"(-max-output)", c.peer, l.srv.cfg.MaxOutput)
	}
	l.srv.log.closed(c.fd, c.peer, closeReason(err, c.state&stPeerDone != 0), reset)
	if l.pendConn == c {
		l.pendConn, l.pend = nil, l.pend[:0]
	}
	unix.Close(c.fd)
	c.state |= stClosed
	c.dropBuffers()
	l.srv.adm.release(c.peer)
	l.srv.cfg.Handler.OnClose(c, err)
}

// --8<-- [start:idle]

// --8<-- [start:expire]

// expire closes connections idle for longer than Config.IdleTimeout, puts paused
// listeners back, and at the shutdown deadline closes what is left.
func (l *loop) expire() {
	if l.draining && l.now >= l.srv.deadline.Load() {
		if l.idleHead != nil {
			l.srv.cut.Store(true)
		}
		for c := l.idleHead; c != nil; c = l.idleHead {
			l.closeConn(c, ErrShutdown)
		}
		return
	}
	if !l.watching && !l.draining && l.now >= l.resumeAt {
		l.srv.adm.retakeSpare()
		if err := l.watchListener(true); err != nil {
			l.srv.log.every(&l.srv.log.errs, "loop %d: cannot watch the listener again: %v",
				l.id, err)
			l.resumeAt = l.now + int64(listenerPause)
		}
	}
	idle := int64(l.srv.cfg.IdleTimeout)
	for c := l.idleHead; idle > 0 && c != nil && l.now-c.lastActive >= idle; c = l.idleHead {
		l.closeConn(c, ErrIdle)
	}
}

// --8<-- [end:expire]

// timeout is how long epoll_wait may sleep: until the next idle expiry, listener resume or
// shutdown deadline, in milliseconds rounded up; -1 when nothing is due.
func (l *loop) timeout() int {
	next := int64(-1)
	due := func(t int64) {
		if next < 0 || t < next {
			next = t
		}
	}
	if idle := int64(l.srv.cfg.IdleTimeout); idle > 0 && l.idleHead != nil {
		due(l.idleHead.lastActive + idle)
	}
	if !l.watching && !l.draining {
		due(l.resumeAt)
	}
	if len(l.again) > 0 && !l.srv.budget.paused.Load() {
		return 0 // kept input to hand over: look at new events, then do it
	}
	if l.draining {
		due(l.srv.deadline.Load())
	}
	if next < 0 {
		return -1
	}
	wait := next - time.Now().UnixNano()
	if wait <= 0 {
		return 0
	}
	return int((wait + int64(time.Millisecond) - 1) / int64(time.Millisecond))
}

// --8<-- [end:idle]

func (l *loop) linkIdle(c *Conn) {
	c.prev, c.next = l.idleTail, nil
	if l.idleTail != nil {
		l.idleTail.next = c
	} else {
		l.idleHead = c
	}
	l.idleTail = c
}

func (l *loop) unlinkIdle(c *Conn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if l.idleHead == c {
		l.idleHead = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else if l.idleTail == c {
		l.idleTail = c.prev
	}
	c.prev, c.next = nil, nil
}

// wake makes the loop's epoll_wait return, from any goroutine: eventfd(2) becomes readable
// once its counter is not 0.
func (l *loop) wake() {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	unix.Write(l.wakefd, b[:])
}

// onWake reads the eventfd back to 0, runs what Execute posted, re-arms what the budget
// parked once reading resumes, and starts the drain when the server is shutting down.
func (l *loop) onWake() {
	var b [8]byte
	unix.Read(l.wakefd, b[:])
	l.runTasks()
	l.unpark()
	if l.srv.shuttingDown() {
		l.drain()
	}
}

// task is one Execute: a function to run on a connection's loop.
type task struct {
	c  *Conn
	fn func(*Conn)
}

// --8<-- [start:execute]

// post queues fn for c from any goroutine, and wakes the loop when the queue was empty:
// one eventfd write, however many tasks follow before the loop gets to them.
func (l *loop) post(c *Conn, fn func(*Conn)) error {
	l.taskMu.Lock()
	defer l.taskMu.Unlock()
	if l.stopped {
		return ErrClosed
	}
	l.tasks = append(l.tasks, task{c, fn})
	if len(l.tasks) == 1 {
		l.wake()
	}
	return nil
}

// runTasks runs what was posted, as callbacks, each followed by its connection's settle.
func (l *loop) runTasks() {
	l.taskMu.Lock()
	tasks := l.tasks
	l.tasks = nil
	l.taskMu.Unlock()
	for _, t := range tasks {
		if t.c.state&stClosed != 0 {
			continue
		}
		t.fn(t.c)
		l.flushPending()
		l.settle(t.c)
	}
}

// --8<-- [end:execute]

// stop refuses further tasks once run has returned.
func (l *loop) stop() {
	l.taskMu.Lock()
	l.stopped, l.tasks = true, nil
	l.taskMu.Unlock()
}

// --8<-- [start:drain]

// drain is the loop's part of a shutdown: no more accepting, and every connection ends once
// it is answered.
func (l *loop) drain() {
	if l.draining {
		return
	}
	l.draining = true
	if err := l.watchListener(false); err != nil {
		l.srv.log.every(&l.srv.log.errs, "loop %d: %v", l.id, err)
	}
	// The number will be closed and reused for a connection: forget it.
	l.listener = -1
	l.srv.listenersOff.Done()
	// --8<-- [start:drain-siocinq]
	for _, c := range l.conns {
		if c == nil {
			continue
		}
		// SIOCINQ (FIONREAD): the bytes the kernel has received on c and we have not read.
		// The peer sent them before it could know we stop, so they are answered: c is read,
		// with backpressure as ever, until that many have gone to the Handler, and only then
		// ends. What comes after is dropped by the lingering close (settle). A connection
		// in backpressure may have megabytes queued: one last read would answer 64 KiB of
		// them and drop the rest after our FIN.
		n, err := unix.IoctlGetInt(c.fd, unix.SIOCINQ)
		if err == nil && n > 0 && c.state&stClosing == 0 {
			c.drainLeft = n
		} else {
			c.state |= stClosing
		}
		l.settle(c)
	}
	// --8<-- [end:drain-siocinq]
}

// --8<-- [end:drain]

func (l *loop) close() {
	if l.wakefd >= 0 {
		unix.Close(l.wakefd)
	}
	if l.epfd >= 0 {
		unix.Close(l.epfd)
	}
}
