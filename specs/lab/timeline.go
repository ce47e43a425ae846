//go:build linux

package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"portproof/internal/procfs"
	"portproof/refserver/sock"
	"portproof/specs/evidence"
)

// A proof about a connection's end tells a story in time: the calls each side made, the
// segments lo carried, the states the kernel reported. evidence.Call and evidence.StateSeen are the calls and
// the states, stamped with the wall clock, the clock of a Capture's segments (SO_TIMESTAMPNS
// is CLOCK_REALTIME), so that the three can be put on one timeline.

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

// StateOf reads the state of the end with descriptor fd from TCP_INFO.
func StateOf(who string, fd int) (evidence.StateSeen, error) {
	at := time.Now()
	st, err := sock.TCPState(fd)
	return evidence.StateSeen{Who: who, State: st, At: at, From: "TCP_INFO"}, err
}

// ErrNoRow is TableStateOf's error when the kernel's table holds no socket for the end:
// it is gone, and nothing of it is kept.
var ErrNoRow = errors.New("no such socket in /proc/net/tcp")

// TableStateOf reads the state of the end local -> remote from the kernel's table of the
// calling thread's network namespace (/proc/thread-self/net/tcp, or tcp6), with its timer.
// It returns ErrNoRow when there is none.
func TableStateOf(who string, local, remote netip.AddrPort) (evidence.StateSeen, error) {
	rows, err := TableRowsOf(local, remote)
	if err != nil {
		return evidence.StateSeen{}, err
	}
	if len(rows) == 0 {
		return evidence.StateSeen{Who: who, At: time.Now(), From: "/proc/net/tcp"}, ErrNoRow
	}
	r := rows[0]
	s := evidence.StateSeen{Who: who, State: procfs.TCPStateName(r.State), At: time.Now(), From: "/proc/net/tcp"}
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
func AwaitState(read func() (evidence.StateSeen, error), want string, within time.Duration) (evidence.StateSeen, error) {
	deadline := time.Now().Add(within)
	for attempt := 0; ; attempt++ {
		s, err := read()
		if (err == nil && s.State == want) || attempt >= 10000 || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(100 * time.Microsecond)
	}
}
