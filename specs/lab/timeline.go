//go:build linux

package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"portproof/internal/procfs"
	"portproof/refserver/sock"
)

// A proof about a connection's end tells a story in time: the calls each side made, the
// segments lo carried, the states the kernel reported. Call and StateSeen are the calls and
// the states, stamped with the wall clock, the clock of a Capture's segments (SO_TIMESTAMPNS
// is CLOCK_REALTIME), so that the three can be put on one timeline.

// Call is one system call a proof made.
type Call struct {
	Who    string    `json:"who"`    // "client", "server": whose socket
	Call   string    `json:"call"`   // "shutdown(SHUT_WR)", "close", "read"
	At     time.Time `json:"at"`     // just before the call was made
	Result string    `json:"result"` // ResultOf: "0", "5 bytes", "EOF", "ECONNRESET"
}

// Calls is a proof's calls, in the order made.
type Calls []Call

// Add appends a call made at at, with what it returned.
func (cs *Calls) Add(who, call string, at time.Time, result string) {
	*cs = append(*cs, Call{Who: who, Call: call, At: at, Result: result})
}

// ResultOf says what a call returned: the errno's name when it failed, "EOF" for a read of
// 0 bytes, "<n> bytes" for a read or write that moved some, "0" for a call that returns
// nothing else (n < 0).
func ResultOf(n int, err error) string {
	switch {
	case err != nil:
		return sock.ErrnoName(err)
	case n == 0:
		return "EOF"
	case n > 0:
		return fmt.Sprintf("%d bytes", n)
	}
	return "0"
}

// StateSeen is a TCP state the kernel reported for one end of a connection.
type StateSeen struct {
	Who   string    `json:"who"`
	State string    `json:"state"` // as ss(8) spells it: "FIN_WAIT2", "TIME_WAIT"
	At    time.Time `json:"at"`    // when it was read
	// From is where the kernel said it: "TCP_INFO" (getsockopt on the end's descriptor) or
	// "/proc/net/tcp" (the kernel's table, for an end that no descriptor reaches).
	From string `json:"from"`
	// TimerLeftMS is, from /proc/net/tcp, the time left on the end's pending timer (the
	// TIME_WAIT's, a FIN_WAIT2 orphan's, a SYN-ACK's), in ms; 0 when none is pending.
	TimerLeftMS float64 `json:"timer_left_ms,omitempty"`
}

// StateOf reads the state of the end with descriptor fd from TCP_INFO.
func StateOf(who string, fd int) (StateSeen, error) {
	at := time.Now()
	st, err := sock.TCPState(fd)
	return StateSeen{Who: who, State: st, At: at, From: "TCP_INFO"}, err
}

// ErrNoRow is TableStateOf's error when the kernel's table holds no socket for the end:
// it is gone, and nothing of it is kept.
var ErrNoRow = errors.New("no such socket in /proc/net/tcp")

// TableStateOf reads the state of the end local -> remote from the kernel's table of the
// calling thread's network namespace (/proc/thread-self/net/tcp, or tcp6), with its timer.
// It returns ErrNoRow when there is none.
func TableStateOf(who string, local, remote netip.AddrPort) (StateSeen, error) {
	rows, err := TableRowsOf(local, remote)
	if err != nil {
		return StateSeen{}, err
	}
	if len(rows) == 0 {
		return StateSeen{Who: who, At: time.Now(), From: "/proc/net/tcp"}, ErrNoRow
	}
	r := rows[0]
	s := StateSeen{Who: who, State: procfs.TCPStateName(r.State), At: time.Now(), From: "/proc/net/tcp"}
	if r.Timer != procfs.TimerNone {
		s.TimerLeftMS = float64(r.When.Microseconds()) / 1e3
	}
	return s, nil
}

// TableRowsOf lists the rows of the kernel's TCP table whose local and remote ends are
// these, as /proc/thread-self/net/tcp (tcp6 for IPv6) shows them.
func TableRowsOf(local, remote netip.AddrPort) ([]procfs.TCPTimed, error) {
	domain := sock.Family(local)
	var rows []procfs.TCPTimed
	err := procfs.EachTCPTimed(domain, func(r procfs.TCPTimed) {
		if r.Local == local && r.Remote == remote {
			rows = append(rows, r)
		}
	})
	return rows, err
}

// AwaitState reads the end's state with read until it is want, at most within, and returns
// the last reading: the caller judges it. On loopback a segment crosses in microseconds, but
// the state it brings is set in softirq, after the call that sent it may have returned.
func AwaitState(read func() (StateSeen, error), want string, within time.Duration) (StateSeen, error) {
	deadline := time.Now().Add(within)
	for attempt := 0; ; attempt++ {
		s, err := read()
		if (err == nil && s.State == want) || attempt >= 10000 || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(100 * time.Microsecond)
	}
}
