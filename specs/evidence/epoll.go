package evidence

import "fmt"

// epoll and the C10K problem (chapter 10): what epoll_wait reports of one socket, level- and
// edge-triggered; epoll_wait against poll(2) over thousands of idle connections; the waiters
// a connection to a shared listener wakes. The docs draw the chapter's three pictures from
// these entries:
//
//	"epoll_trigger"  EpollTrigger  one socket, one script of sends, reads and epoll_waits
//	"epoll_scale"    EpollScale    epoll_wait and poll over 100 to 10,000 idle connections
//	"epoll_herd"     []EpollHerd   waiters on one listener, without and with EPOLLEXCLUSIVE

const (
	// EntryEpollTrigger is an EpollTrigger: one socket, one script of sends, reads and
	// epoll_waits, and what each wait reported; once per registration.
	EntryEpollTrigger = "epoll_trigger"
	// EntryEpollScale is an EpollScale: epoll_wait and poll over 100, 1,000 and 10,000
	// idle connections, one of them ready, and the time per call of each.
	EntryEpollScale = "epoll_scale"
	// EntryEpollHerd is a []EpollHerd: waiters on one listener, their wake-ups per
	// registration.
	EntryEpollHerd = "epoll_herd"
)

// TriggerStep is one step of the trigger script as it ran.
type TriggerStep struct {
	Do       string `json:"do"`                // the step: "send 100", "wait", "read 30", "read to EAGAIN"
	Reported int    `json:"reported"`          // for a wait: epoll_wait's return (timeout 0)
	Events   string `json:"events,omitempty"`  // the event's flags, when reported
	Read     int    `json:"read,omitempty"`    // for a read: bytes taken
	Arrival  bool   `json:"arrival,omitempty"` // for a send: the bytes reached the socket
	Unread   int    `json:"unread"`            // FIONREAD (SIOCINQ) on the socket after the step
}

// EpollTrigger is one run of the script on one registration.
type EpollTrigger struct {
	Registered string        `json:"registered"` // "EPOLLIN" or "EPOLLIN|EPOLLET"
	Conn       string        `json:"conn"`       // the server end's tuple
	Steps      []TriggerStep `json:"steps"`      // in the script's order
}

// Waits counts the script's waits that match.
func (s EpollTrigger) Waits(match func(TriggerStep) bool) int {
	n := 0
	for _, st := range s.Steps {
		if st.Do == "wait" && match(st) {
			n++
		}
	}
	return n
}

// Figures are what the chapter cites of one run: each wait's report and FIONREAD, and the
// waits that reported nothing while bytes were unread, the lost wake-ups of EPOLLET.
func (s EpollTrigger) Figures() Figures {
	var reported, unread []int
	for _, st := range s.Steps {
		if st.Do == "wait" {
			reported, unread = append(reported, st.Reported), append(unread, st.Unread)
		}
	}
	return Figures{"registered": s.Registered, "reported": reported, "unread": unread,
		"waits":          len(reported),
		"reported_total": s.Waits(func(st TriggerStep) bool { return st.Reported > 0 }),
		"unread_unreported": s.Waits(func(st TriggerStep) bool {
			return st.Unread > 0 && st.Reported == 0
		})}
}

// EpollScale is what the scale child saw.
type EpollScale struct {
	Connections int    `json:"connections"` // server ends open in the child
	Passed      int    `json:"passed"`      // clients' ends passed to the holder
	Descriptors int    `json:"descriptors"` // the child's open descriptors with every connection up
	NoFile      uint64 `json:"nofile"`      // its RLIMIT_NOFILE soft limit
	NoFileHard  uint64 `json:"nofile_hard"` // and hard limit: what bounds Connections
	// BuildMS is how long connecting and accepting them all took.
	BuildMS float64 `json:"build_ms"`
	// Ready is the connection made readable: its index among the server ends, chosen at
	// random below the smallest count, so that every round watches it.
	Ready       int `json:"ready"`
	ReadyFD     int `json:"ready_fd"`     // its descriptor: what epoll_wait must report
	ReadyUnread int `json:"ready_unread"` // FIONREAD on it: the byte its client sent
	// IdleUnread is FIONREAD summed over every other server end: 0, idle.
	IdleUnread int          `json:"idle_unread"`
	Rounds     []ScaleRound `json:"rounds"` // one per count, smallest first
}

// ScaleRound is one count of registered connections: the first call of each kind, as
// asserted, and the time per call over many.
type ScaleRound struct {
	Registered int `json:"registered"` // connections watched: one of the counts asked
	// epoll_wait(timeout 0) on an epoll instance watching the first Registered server ends.
	EpollReturned int `json:"epoll_returned"` // its return: events
	EpollFD       int `json:"epoll_fd"`       // the first event's descriptor
	// EpollWritten is how many entries of the events buffer the kernel wrote: the buffer has
	// room for more than one, each entry filled with a sentinel first.
	EpollWritten int     `json:"epoll_written"`
	EpollCalls   int     `json:"epoll_calls"`       // timed calls, until a time or a count ran out
	EpollNS      float64 `json:"epoll_ns_per_call"` // their mean, in ns
	// EpollOdd counts the timed calls that did not return the ready one alone.
	EpollOdd int `json:"epoll_odd"`
	// poll(timeout 0) handed the same Registered descriptors.
	PollReturned int `json:"poll_returned"` // its return: entries with revents set
	// PollWritten is how many entries' revents the kernel wrote back (each filled with a
	// sentinel first): every one it was handed.
	PollWritten int     `json:"poll_written"`
	PollSet     int     `json:"poll_set"`         // entries with revents not 0
	PollSetAt   int     `json:"poll_set_index"`   // the index of the last of them
	PollCalls   int     `json:"poll_calls"`       // timed calls, as for epoll_wait
	PollNS      float64 `json:"poll_ns_per_call"` // their mean, in ns
	PollOdd     int     `json:"poll_odd"`         // timed calls that did not return 1
}

// Figures are what the chapter cites of the run: its limits, and each round's time per
// call of either kind; held is how many clients' ends the holder kept open at once.
func (s EpollScale) Figures(held int) Figures {
	f := Figures{"connections": s.Connections, "held": held, "descriptors": s.Descriptors,
		"nofile": s.NoFile, "nofile_hard": s.NoFileHard, "build_ms": s.BuildMS, "ready": s.Ready,
		"ready_fd": s.ReadyFD}
	for _, r := range s.Rounds {
		f[fmt.Sprintf("epoll_us_%d", r.Registered)] = r.EpollNS / 1e3
		f[fmt.Sprintf("poll_us_%d", r.Registered)] = r.PollNS / 1e3
		f[fmt.Sprintf("poll_written_%d", r.Registered)] = r.PollWritten
		f[fmt.Sprintf("epoll_calls_%d", r.Registered)] = r.EpollCalls
		f[fmt.Sprintf("poll_calls_%d", r.Registered)] = r.PollCalls
	}
	if n := len(s.Rounds); n > 0 {
		last := s.Rounds[n-1]
		f["ratio"] = last.PollNS / last.EpollNS
	}
	return f
}

// EpollHerd is one run: the registration, and each waiter's count.
type EpollHerd struct {
	Registered  string `json:"registered"`  // the listener's events in each epoll instance
	Listener    string `json:"listener"`    // the one listener every waiter watches
	Connections int    `json:"connections"` // made one at a time, each once every waiter slept
	Accepted    int    `json:"accepted"`    // by all waiters together
	// WokeUp is every waiter's, together: the herd.
	WokeUp  int          `json:"woke_up"`
	Waiters []HerdWaiter `json:"waiters"` // in the order they started
}

// TotalReturned is the epoll_wait returns of every waiter, together: fewer than the
// wake-ups when a waiter woke to find the connection taken and slept again.
func (h EpollHerd) TotalReturned() int {
	n := 0
	for _, w := range h.Waiters {
		n += w.Returned
	}
	return n
}

// HerdWaiter is one thread's part.
type HerdWaiter struct {
	TID int `json:"tid"` // its thread (gettid): /proc/self/task/TID/stat says when it sleeps
	// WokeUp counts the times the thread was woken in epoll_wait: its voluntary context
	// switches (/proc/thread-self/status) during its epoll_wait calls, each a sleep that a
	// wake-up ended, less the one the stop ended.
	WokeUp   int `json:"woke_up"`
	Returned int `json:"returned"` // epoll_wait returns that reported the listener
	Accepted int `json:"accepted"` // accept4 calls that got a connection
	EAGAIN   int `json:"eagain"`   // accept4 calls that found the queue empty: another took it
}
