//go:build linux

package refserver

import (
	"errors"
	"fmt"
	"log"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// logbook is where the server's events become lines: each system call of New as strace
// would print it, a line per connection when asked, and every kind of flood at most once a
// second. The loops and the admission policy write to it; it calls nothing back.
type logbook struct {
	log   *log.Logger // nil: silent
	conns bool        // a line per accepted and per closed connection
	// One rate limit per kind of event, so that a flood of one kind does not hide another.
	shed, refused, perIP, reset, cut, paused, errs rateLog
}

// narrate prints one system call as strace would: the call, then "= result" or "= -1 ERRNO".
func (b *logbook) narrate(format string, result int, err error, args ...any) {
	if b.log == nil {
		return
	}
	call := fmt.Sprintf(format, args...)
	if err != nil {
		b.log.Printf("%s = -1 %s (%v)", call, sock.ErrnoName(err), errors.Unwrap(err))
		return
	}
	b.log.Printf("%s = %d", call, result)
}

func (b *logbook) printf(format string, args ...any) {
	if b.log != nil {
		b.log.Printf(format, args...)
	}
}

// opened names a connection as the loop registers it.
func (b *logbook) opened(fd int, peer netip.AddrPort) {
	if b.log != nil && b.conns {
		local, _ := sock.LocalAddr(fd)
		b.log.Printf("accept4 = %d: tcp %s -> %s", fd, local, peer)
	}
}

// closed names a connection before its descriptor is closed, while getsockname still
// answers. A reset gets a line of its own, at most once a second, when there is no line per
// connection.
func (b *logbook) closed(fd int, peer netip.AddrPort, why string, reset bool) {
	switch {
	case b.log == nil:
	case b.conns:
		local, _ := sock.LocalAddr(fd)
		b.log.Printf("close(%d): tcp %s -> %s: %s", fd, local, peer, why)
	case reset:
		b.every(&b.reset, "reset by %s: %s; the stats line counts them", peer, why)
	}
}

// isReset tells a connection the peer ended with RST. ECONNRESET: the RST arrived. EPIPE: a
// write after it, once the kernel had reported the reset to an earlier call.
func isReset(err error) bool {
	return errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
}

// closeReason says in words why a connection ends: its errno, our own error, or the FIN.
func closeReason(err error, peerDone bool) string {
	switch {
	case err != nil:
		// A read or write fails with a bare unix.Errno, shutdown with an *os.SyscallError
		// around one: As finds it in both (Unwrap of a bare Errno is nil).
		var errno unix.Errno
		if errors.As(err, &errno) {
			return unix.ErrnoName(errno) + " (" + errno.Error() + ")"
		}
		return err.Error()
	case peerDone:
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

func (b *logbook) every(r *rateLog, format string, args ...any) {
	if b.log == nil {
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
	b.log.Printf(format, args...)
}
