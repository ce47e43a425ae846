//go:build linux

package refserver

import (
	"fmt"
	"sync/atomic"

	"portproof/refserver/sock"
)

// counters are the server's totals, kept by the loops and the admission policy and read by
// Stats: a flood of sheds, refusals or resets shows up here, and in at most one log line a
// second.
type counters struct {
	// open is the connections held by all loops now; the admission policy keeps it exact,
	// since MaxConns is checked against it.
	open                                    atomic.Int64
	accepted, closed, shed, refused, resets atomic.Uint64
	// inputCut and outputCut count connections closed at Config.MaxInput and MaxOutput.
	inputCut, outputCut atomic.Uint64
}

// Stats is a snapshot for the SIGUSR1 line and the tests.
type Stats struct {
	Open                            int64  // connections held now
	Accepted, Closed, Shed, Refused uint64 // since start
	// Resets counts connections the peer ended with RST (ECONNRESET, or EPIPE on a write),
	// since start: a flood of them is this number, not a flood of log lines.
	Resets uint64
	// InputCut and OutputCut count connections closed at MaxInput (a message too long)
	// and at MaxOutput (a peer too slow for what the Handler wrote), since start.
	InputCut, OutputCut uint64
	// Queued is the output waiting for slow readers now, all connections together, and
	// Paused says the loops have stopped reading because it passed Config.MaxQueued.
	Queued          int64
	Paused          bool
	Descriptors     int    // open descriptors of the process (/proc/self/fd)
	DescriptorLimit uint64 // RLIMIT_NOFILE, soft
	Queue           sock.AcceptQueue
}

// Stats reads the counters, the descriptor table and the listeners' accept queues.
func (s *Server) Stats() Stats {
	n := &s.count
	st := Stats{Open: n.open.Load(), Accepted: n.accepted.Load(), Closed: n.closed.Load(),
		Shed: n.shed.Load(), Refused: n.refused.Load(), Resets: n.resets.Load(),
		InputCut: n.inputCut.Load(), OutputCut: n.outputCut.Load(),
		Queued: s.budget.queued.Load(), Paused: s.budget.paused.Load()}
	st.Descriptors, _ = sock.OpenDescriptors()
	st.DescriptorLimit, _, _ = sock.DescriptorLimit()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fd := range s.listeners {
		if fd < 0 {
			continue
		}
		if q, err := sock.AcceptQueueOf(fd); err == nil {
			st.Queue.Len += q.Len
			st.Queue.Max += q.Max
		}
	}
	return st
}

func (st Stats) String() string {
	paused := ""
	if st.Paused {
		paused = ", reading paused"
	}
	return fmt.Sprintf("open %d (accepted %d, closed %d, shed %d, refused %d, reset %d, "+
		"cut %d); descriptors %d/%d; accept queue %d/%d; output queued %d KiB%s",
		st.Open, st.Accepted, st.Closed, st.Shed, st.Refused, st.Resets,
		st.InputCut+st.OutputCut, st.Descriptors, st.DescriptorLimit, st.Queue.Len,
		st.Queue.Max, (st.Queued+1023)/1024, paused)
}
