package evidence

import (
	"fmt"
	"net/netip"
	"time"
)

// A proof about a connection's end tells a story in time: the calls each side made, the
// segments lo carried, the states the kernel reported. All three are stamped with the wall
// clock, the clock of a capture's segments (SO_TIMESTAMPNS is CLOCK_REALTIME), so that they
// can be put on one timeline.

// Call is one system call a proof made.
type Call struct {
	Who    string    `json:"who"`    // "client", "server": whose socket
	Call   string    `json:"call"`   // "shutdown(SHUT_WR)", "close", "read"
	At     time.Time `json:"at"`     // just before the call was made
	Result string    `json:"result"` // lab.ResultOf: "0", "5 bytes", "EOF", "ECONNRESET"
}

// Calls is a proof's calls, in the order made.
type Calls []Call

// Add appends a call made at at, with what it returned.
func (cs *Calls) Add(who, call string, at time.Time, result string) {
	*cs = append(*cs, Call{Who: who, Call: call, At: at, Result: result})
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

// Segment is one TCP segment that lo carried, as a packet capture (lab.Capture) shows it.
type Segment struct {
	Time  time.Time      `json:"time"`  // when lo received it: the kernel's timestamp (SO_TIMESTAMPNS)
	Src   netip.AddrPort `json:"src"`   // the sender
	Dst   netip.AddrPort `json:"dst"`   // the receiver
	Flags string         `json:"flags"` // "SYN", "SYN,ACK", "ACK", "PSH,ACK", "FIN,ACK", "RST"...
	// Seq is relative to the sender's initial sequence number, as tcpdump shows it, once the
	// capture has seen that side's SYN (its SYN is 0, its first data byte 1); the raw number
	// before. Ack likewise, relative to the receiver's ISN; 0 when the ACK flag is off.
	Seq uint32 `json:"seq"`
	Ack uint32 `json:"ack"`
	Len int    `json:"len"` // payload bytes
}

func (s Segment) String() string {
	return fmt.Sprintf("%s > %s %s seq=%d ack=%d len=%d", s.Src, s.Dst, s.Flags, s.Seq, s.Ack, s.Len)
}
