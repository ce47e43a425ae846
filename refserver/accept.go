//go:build linux

package refserver

import (
	"errors"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// admission is the server's policy at the door, shared by all loops: for the connection at
// the head of an accept queue it decides whether the loop gets it, and answers the ones it
// keeps out with FIN. It keeps the open count exact and has the spare descriptor for EMFILE.
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
	// spare is a descriptor (/dev/null) held in reserve for EMFILE; -1 while spent.
	// spareMu guards it, and every accept4 holds it for reading (acceptBesideSpare): the
	// number shed frees must go to shed's own accept4, not to another loop's.
	spare   int
	spareMu sync.RWMutex
	count   *counters // what it admits, refuses and sheds is counted here
	log     *logbook  // and told here, at most a line a second per kind
}

func newAdmission(cfg Config, count *counters, log *logbook) *admission {
	a := &admission{maxConns: int64(cfg.MaxConns), spare: -1, count: count, log: log}
	if cfg.MaxConnsPerIP > 0 {
		a.maxPerIP = cfg.MaxConnsPerIP
		a.perIP = make(map[netip.Addr]int)
	}
	return a
}

// verdict is what the admission policy did with the head of an accept queue.
type verdict uint8

const (
	admitted   verdict = iota // accepted and counted in: the loop registers it
	turnedAway                // accepted and closed at once (a cap, or shed on EMFILE): FIN
	skipped                   // nothing to do with this one (EINTR, ECONNABORTED): next
	queueEmpty                // the queue is empty (EAGAIN): wait for epoll
	stuck                     // EMFILE, and no spare to spend: the connection stays queued
	failed                    // another error, logged
)

// --8<-- [start:admit]

// next takes the connection at the head of the listener's accept queue and decides on it.
func (a *admission) next(lfd int) (int, netip.AddrPort, verdict) {
	fd, peer, err := a.acceptBesideSpare(lfd)
	switch {
	case err == nil:
		switch a.admit(clientKey(peer)) {
		case overMaxConns:
			// The handshake is long done, so the polite answer is FIN.
			unix.Close(fd)
			a.log.every(&a.log.refused, "refused %s: %d connections open (-max-conns)",
				peer, a.maxConns)
			return -1, peer, turnedAway
		case overPerIP:
			unix.Close(fd)
			a.log.every(&a.log.perIP, "refused %s: %d connections open from %s (-max-conns-per-ip)",
				peer, a.maxPerIP, clientKey(peer))
			return -1, peer, turnedAway
		}
		return fd, peer, admitted
	case errors.Is(err, unix.EAGAIN):
		return -1, peer, queueEmpty
	case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
		// ECONNABORTED: the client reset while queued; take the next one.
		return -1, peer, skipped
	// --8<-- [start:admit-emfile]
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE):
		// accept4 reserves a descriptor number before it looks at the queue
		// (__sys_accept4_file), so EMFILE comes even when nothing is queued. TCP_INFO
		// needs no descriptor: ask it, or every full-table wake-up would spend the spare,
		// and another thread could take its number while it is free.
		if q, err := sock.AcceptQueueOf(lfd); err == nil && q.Len == 0 {
			return -1, peer, queueEmpty
		}
		return -1, peer, a.shed(lfd)
		// --8<-- [end:admit-emfile]
	}
	a.log.every(&a.log.errs, "%v", err)
	return -1, peer, failed
}

// --8<-- [end:admit]

// A connection the caps keep out, and why.
type refusal uint8

const (
	allowed refusal = iota
	overMaxConns
	overPerIP
)

// clientKey is what -max-conns-per-ip counts by: the peer's address, an IPv4 client on an
// IPv6 listener (::ffff:a.b.c.d) as its IPv4 self. An IPv6 client often holds a whole /64;
// a fork that faces the Internet may want to count by prefix here.
func clientKey(peer netip.AddrPort) netip.Addr { return peer.Addr().Unmap() }

// admit counts a new connection from ip in, unless a cap is reached.
func (a *admission) admit(ip netip.Addr) refusal {
	if n := a.count.open.Add(1); a.maxConns > 0 && n > a.maxConns {
		a.count.open.Add(-1)
		a.count.refused.Add(1)
		return overMaxConns
	}
	if a.maxPerIP > 0 {
		a.perIPMu.Lock()
		n := a.perIP[ip]
		if n >= a.maxPerIP {
			a.perIPMu.Unlock()
			a.count.open.Add(-1)
			a.count.refused.Add(1)
			return overPerIP
		}
		a.perIP[ip] = n + 1
		a.perIPMu.Unlock()
	}
	a.count.accepted.Add(1)
	return allowed
}

// release counts a closed connection out.
func (a *admission) release(peer netip.AddrPort) {
	if a.maxPerIP > 0 {
		ip := clientKey(peer)
		a.perIPMu.Lock()
		if n := a.perIP[ip] - 1; n > 0 {
			a.perIP[ip] = n
		} else {
			delete(a.perIP, ip)
		}
		a.perIPMu.Unlock()
	}
	a.count.open.Add(-1)
	a.count.closed.Add(1)
}

// --8<-- [start:spare]

// --8<-- [start:shed]

// shed answers EMFILE the way the article thinks the kernel does. The kernel does not:
// accept4 failed, the connection is still queued, and the client has heard nothing. So we
// free the spare descriptor, accept the connection with it, close it (the client reads FIN,
// end of stream), and take the spare back.
func (a *admission) shed(lfd int) verdict {
	a.spareMu.Lock()
	defer a.spareMu.Unlock()
	if a.spare < 0 && !a.takeSpareLocked() {
		return stuck
	}
	unix.Close(a.spare)
	a.spare = -1
	fd, peer, err := sock.Accept(lfd)
	if err == nil {
		unix.Close(fd)
		a.count.shed.Add(1)
		soft, _, _ := sock.DescriptorLimit()
		a.log.every(&a.log.shed, "shed %s: accept4 failed with EMFILE (RLIMIT_NOFILE %d in use); "+
			"accepted it on the spare descriptor and closed it, so the client sees FIN", peer, soft)
	}
	// Another thread of the process (not a loop's accept4: see acceptBesideSpare) may take
	// the freed number first; then the spare waits for retakeSpare.
	a.takeSpareLocked()
	// --8<-- [end:shed]
	switch {
	case err == nil:
		return turnedAway
	case errors.Is(err, unix.EAGAIN):
		return queueEmpty // another loop took the connection
	}
	return stuck // a second EMFILE: the spare's number was not enough
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

// acceptBesideSpare is sock.Accept under spareMu's read lock. Without it, another loop's
// accept4 could run between shed's close of the spare and shed's own accept4, and take the
// freed number: that loop admitted one connection more than the descriptors allow, shed met
// EMFILE again, the spare could not be taken back, and from then on no loop could shed: new
// clients waited in the accept queue until some connection ended.
func (a *admission) acceptBesideSpare(lfd int) (int, netip.AddrPort, error) {
	a.spareMu.RLock()
	defer a.spareMu.RUnlock()
	return sock.Accept(lfd)
}

// retakeSpare tries again to hold a spare descriptor, after one was lost to a race.
func (a *admission) retakeSpare() {
	a.spareMu.Lock()
	defer a.spareMu.Unlock()
	if a.spare < 0 {
		a.takeSpareLocked()
	}
}

// closeSpare gives the spare back at the end.
func (a *admission) closeSpare() {
	a.spareMu.Lock()
	defer a.spareMu.Unlock()
	if a.spare >= 0 {
		unix.Close(a.spare)
		a.spare = -1
	}
}
