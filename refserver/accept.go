//go:build linux

package refserver

import (
	"errors"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// acceptBatch bounds the accepts of one wake-up, so that a flood of new connections cannot
// starve the loop's established ones.
const acceptBatch = 64

// listenerPause is how long a loop stops watching the listener when it can neither accept
// nor shed (no spare descriptor): long enough not to spin, short enough to serve again soon.
const listenerPause = 50 * time.Millisecond

// admission is the server's policy at the door, shared by all loops.
type admission struct {
	// maxConns caps open connections (0: no cap). Past it a connection is accepted and closed
	// at once: the client gets FIN rather than waiting in a full accept queue.
	maxConns int64
	// maxPerIP caps open connections from one client address (0: no cap). Descriptors are
	// the real limit, and without it one greedy client can take them all.
	maxPerIP int
	// perIP counts open connections by client address while maxPerIP is set. An address
	// leaves the map when its count drops to 0, so the map is as big as the set of clients
	// connected now, not of every client ever seen. perIPMu guards it: every loop admits and
	// releases on its own goroutine.
	perIP   map[netip.Addr]int
	perIPMu sync.Mutex
	// open counts connections held by all loops; admit and release keep it exact.
	open atomic.Int64
	// spare is a descriptor (/dev/null) held in reserve for EMFILE; -1 while spent.
	// spareMu guards it, and every accept4 holds it for reading (accept): the number
	// shedOne frees must go to shedOne's own accept4, not to another loop's.
	spare   int
	spareMu sync.RWMutex
	// The counters the stats line prints: a flood of sheds, refusals or resets shows up here,
	// and in at most one log line a second.
	accepted, closed, shed, refused, resets atomic.Uint64
}

// A connection the admission policy keeps out, and why.
type refusal int

const (
	admitted refusal = iota
	overMaxConns
	overPerIP
)

// --8<-- [start:accept]

// acceptFrom drains a readable listener: accept4 until the queue is empty (EAGAIN) or the
// batch is done; level-triggered epoll reports the listener again if more wait.
func (l *loop) acceptFrom(lfd int) {
	s := l.srv
	for range acceptBatch {
		if s.shuttingDown() {
			// Shutdown has begun, and its wake-up may still be on its way: not one more.
			l.drain()
			return
		}
		fd, peer, err := s.adm.accept(lfd)
		switch {
		case err == nil:
			switch s.adm.admit(clientKey(peer)) {
			case admitted:
				l.register(fd, peer)
				continue
			case overMaxConns:
				// The handshake is long done, so the polite answer is FIN.
				unix.Close(fd)
				s.logEvery(&s.rlRefused, "refused %s: %d connections open (-max-conns)", peer, s.adm.maxConns)
			case overPerIP:
				unix.Close(fd)
				s.logEvery(&s.rlPerIP, "refused %s: %d connections open from %s (-max-conns-per-ip)", peer, s.adm.maxPerIP, clientKey(peer))
			}
		case errors.Is(err, unix.EAGAIN):
			return
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
			// ECONNABORTED: the client reset while queued; take the next one.
		case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
			// accept4 reserves a descriptor number before it looks at the queue
			// (__sys_accept4_file), so EMFILE comes even when nothing is queued. TCP_INFO
			// needs no descriptor: ask it, or every full-table wake-up would spend the spare,
			// and another thread could take its number while it is free.
			if q, err := AcceptQueueOf(lfd); err == nil && q.Len == 0 {
				return
			}
			switch s.adm.shedOne(lfd, s) {
			case shedEmpty:
				return
			case shedStuck:
				// No spare to spend: leave the connection queued and stop watching the
				// listener for a moment, or level-triggered epoll would report it readable
				// again at once and the loop would spin.
				if err := l.listen(false); err == nil {
					l.resumeAt = l.now + int64(listenerPause)
				}
				return
			}
		default:
			s.logEvery(&s.rlErr, "%v", err)
			return
		}
	}
}

// --8<-- [end:accept]

// clientKey is what -max-conns-per-ip counts by: the peer's address, an IPv4 client on an
// IPv6 listener (::ffff:a.b.c.d) as its IPv4 self. An IPv6 client often holds a whole /64;
// a fork that faces the Internet may want to count by prefix here.
func clientKey(peer netip.AddrPort) netip.Addr { return peer.Addr().Unmap() }

// admit counts a new connection from ip in, unless a cap is reached.
func (a *admission) admit(ip netip.Addr) refusal {
	if n := a.open.Add(1); a.maxConns > 0 && n > a.maxConns {
		a.open.Add(-1)
		a.refused.Add(1)
		return overMaxConns
	}
	if a.maxPerIP > 0 {
		a.perIPMu.Lock()
		n := a.perIP[ip]
		if n >= a.maxPerIP {
			a.perIPMu.Unlock()
			a.open.Add(-1)
			a.refused.Add(1)
			return overPerIP
		}
		a.perIP[ip] = n + 1
		a.perIPMu.Unlock()
	}
	a.accepted.Add(1)
	return admitted
}

func (a *admission) release(ip netip.Addr) {
	if a.maxPerIP > 0 {
		a.perIPMu.Lock()
		if n := a.perIP[ip] - 1; n > 0 {
			a.perIP[ip] = n
		} else {
			delete(a.perIP, ip)
		}
		a.perIPMu.Unlock()
	}
	a.open.Add(-1)
	a.closed.Add(1)
}

// What shedOne did.
const (
	shedDone  = iota // a connection was accepted on the spare and closed
	shedEmpty        // the queue was empty after all (another loop took the connection)
	shedStuck        // no spare descriptor to spend: nothing could be done
)

// --8<-- [start:spare]

// shedOne answers EMFILE the way the article thinks the kernel does. The kernel does not:
// accept4 failed, the connection is still queued, and the client has heard nothing. So we
// free the spare descriptor, accept the connection with it, close it (the client reads FIN,
// end of stream), and take the spare back. It reports what it managed.
func (a *admission) shedOne(lfd int, s *Server) int {
	a.spareMu.Lock()
	defer a.spareMu.Unlock()
	if a.spare < 0 && !a.takeSpareLocked() {
		return shedStuck
	}
	unix.Close(a.spare)
	a.spare = -1
	fd, peer, err := Accept(lfd)
	if err == nil {
		unix.Close(fd)
		a.shed.Add(1)
		soft, _, _ := DescriptorLimit()
		s.logEvery(&s.rlShed, "shed %s: accept4 failed with EMFILE (RLIMIT_NOFILE %d in use); accepted it on the spare descriptor and closed it, so the client sees FIN", peer, soft)
	}
	// Another thread of the process (not a loop's accept4: see accept) may take the freed
	// number first; then the spare waits for retakeSpare.
	a.takeSpareLocked()
	switch {
	case err == nil:
		return shedDone
	case errors.Is(err, unix.EAGAIN):
		return shedEmpty
	}
	return shedStuck // a second EMFILE: the spare's number was not enough
}

func (a *admission) takeSpareLocked() bool {
	fd, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	a.spare = fd
	return true
}

// --8<-- [end:spare]

// accept is Accept under spareMu's read lock. Without it, another loop's accept4 could run
// between shedOne's close of the spare and shedOne's own accept4, and take the freed
// number: that loop admitted one connection more than the descriptors allow, shedOne met
// EMFILE again, the spare could not be taken back, and from then on no loop could shed:
// new clients waited in the accept queue until some connection ended.
func (a *admission) accept(lfd int) (int, netip.AddrPort, error) {
	a.spareMu.RLock()
	defer a.spareMu.RUnlock()
	return Accept(lfd)
}

// retakeSpare tries again to hold a spare descriptor, after one was lost to a race.
func (a *admission) retakeSpare() {
	a.spareMu.Lock()
	defer a.spareMu.Unlock()
	if a.spare < 0 {
		a.takeSpareLocked()
	}
}
