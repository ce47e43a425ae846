package evidence

import "time"

// Chapter 5's entries, the handshake and accept() (ch05_handshake_test.go), beside
// EntryErrno and EntryPorts. A spec's timeline entries share one clock, CLOCK_REALTIME, in
// µs after the connection's SYN: the segments by their kernel timestamps, the calls by
// time.Now in the process that made them.
//
//	"packets"             Timeline           one connection's segments, on its timeline
//	"accept_at_us"        int64              when accept4 was called, on that timeline
//	"syscalls_at_us"      []TimelineCall     the process's own calls, on that timeline
//	"accept_queue"        []QueueAt          the listener's accept queue, each time it was read
//	"bytes_before_accept" BytesBeforeAccept  what the client wrote and the server read
//	"tcp_states"          []SocketState      sockets' TCP states, as ss(8) spells them
//	"descriptor_table"    DescriptorTable    RLIMIT_NOFILE, and how the proof filled the table
//	"epoll_rounds"        []EpollRound       epoll_wait calls on a listener accept4 cannot drain
//	"shed_clients"        []ShedClient       the shedding server's clients, and their first read
//	"cpu_time"            CPUWindow          the process's CPU over a window; a BusyLoop's too
//	"refserver_stats"     (a spec type)      refserver.Stats, serving and stopped, and its log
const (
	// EntryPackets is a Timeline: one connection's TCP segments as lo carried them (kernel
	// timestamps), in µs after that connection's SYN, oldest first.
	EntryPackets = "packets"
	// EntryAcceptAt is an int64: when the accept() that returned the connection was called,
	// in µs after its SYN, on the same clock as the packets (CLOCK_REALTIME). The line the
	// timeline draws accept at.
	EntryAcceptAt = "accept_at_us"
	// EntrySyscalls is a []TimelineCall: the process's own system calls on that timeline.
	EntrySyscalls = "syscalls_at_us"
	// EntryAcceptQueue is a []QueueAt: the listener's accept queue (TCP_INFO) at each moment
	// the proof looked.
	EntryAcceptQueue = "accept_queue"
	// EntryBytesBeforeAccept is a BytesBeforeAccept: what the client's write returned and
	// what the server's read returned after accept.
	EntryBytesBeforeAccept = "bytes_before_accept"
	// EntryTCPStates is a []SocketState: a socket's TCP state (TCP_INFO tcpi_state), as ss
	// spells it.
	EntryTCPStates = "tcp_states"
	// EntryDescriptorTable is a DescriptorTable: RLIMIT_NOFILE and how the proof filled,
	// shared or freed the descriptor table.
	EntryDescriptorTable = "descriptor_table"
	// EntryEpollRounds is a []EpollRound: consecutive epoll_wait(timeout 0) calls on a
	// level-triggered listener that accept cannot drain.
	EntryEpollRounds = "epoll_rounds"
	// EntryShedClients is a []ShedClient: each client of the shedding server, in order, and
	// what its first read returned.
	EntryShedClients = "shed_clients"
	// EntryCPUTime is a CPUWindow: the process's CPU time over a window of wall time, and
	// what ran in it; for the EMFILE proof's bare loop a BusyLoop, with its calls' answers
	// counted.
	EntryCPUTime = "cpu_time"
	// EntryRefserverStats is the specs' ch5ServerSeen: refserver's Stats while it served and
	// once it had stopped, and the lines it logged. Its Stats are refserver's own type, which
	// this package, of the standard library alone, does not import.
	EntryRefserverStats = "refserver_stats"
)

// Timeline is one connection's captured segments, each in µs after the connection's SYN.
type Timeline struct {
	Conn    string           `json:"conn"`    // which connection, in the spec's words
	Packets []TimelinePacket `json:"packets"` // oldest first
}

// TimelinePacket is one captured segment on a connection's timeline. It is not a Segment:
// its time is relative to the SYN (at_us, where a Segment has the absolute time), its
// addresses are text, and it says which end sent it. Nor an OverflowPacket: it has no
// phase, and its clock starts at the connection's own SYN.
type TimelinePacket struct {
	AtUS  int64  `json:"at_us"` // µs after the connection's SYN, both kernel timestamps
	From  string `json:"from"`  // "client" or "server"
	Src   string `json:"src"`   // the sender's address and port
	Dst   string `json:"dst"`   // the receiver's
	Flags string `json:"flags"` // "SYN", "SYN,ACK", "ACK", "PSH,ACK", "FIN,ACK", "RST,ACK"
	Seq   uint32 `json:"seq"`   // relative to the sender's ISN, as tcpdump shows it
	Ack   uint32 `json:"ack"`   // relative to the receiver's ISN; 0 without the ACK flag
	Len   int    `json:"len"`   // payload bytes
}

// TimelineCall is one system call of the proof on the packets' timeline. It is not a Call:
// its time is relative to the SYN, to sit among the TimelinePackets, and the call's text
// says whose it was.
type TimelineCall struct {
	Call   string `json:"call"`   // "connect returned", "accept4 called"...
	AtUS   int64  `json:"at_us"`  // µs after the SYN
	Result string `json:"result"` // what it returned
}

// QueueAt is a listener's accept queue at one moment.
type QueueAt struct {
	When string `json:"when"` // the moment, in the spec's words: "after accept"
	Len  uint32 `json:"len"`  // tcpi_unacked on a listener
	Max  uint32 `json:"max"`  // tcpi_sacked on a listener
}

// BytesBeforeAccept is data a client sent to a connection no one had accepted yet, and what
// the server read once it did.
type BytesBeforeAccept struct {
	Written int    `json:"written"` // write(2)'s return on the client, before accept
	Read    int    `json:"read"`    // read(2)'s return on the accepted socket
	Payload string `json:"payload"` // what read returned
}

// SocketState is a socket's TCP state as the proof read it (TCP_INFO tcpi_state).
type SocketState struct {
	Socket string `json:"socket"` // which socket, and when: "client, before accept"
	State  string `json:"state"`  // as ss(8) spells it: "ESTABLISHED", "CLOSE_WAIT"
}

// DescriptorTable is the process's descriptor table as a proof filled or shared it.
type DescriptorTable struct {
	Limit uint64 `json:"limit"` // RLIMIT_NOFILE soft, read back with getrlimit
	// The EMFILE proof: how it filled the table and made room again.
	Filled     int    `json:"filled,omitempty"`      // /dev/null opened until the kernel said EMFILE
	FillErrno  string `json:"fill_errno,omitempty"`  // the errno of the open that failed
	Freed      int    `json:"freed,omitempty"`       // the descriptor closed to make room
	AcceptedFD int    `json:"accepted_fd,omitempty"` // what the next accept4 returned
	// The shedding proof: the table the server and its clients share.
	Open int  `json:"open,omitempty"` // open below the limit once the server was set up (/proc/self/fd)
	Pad  bool `json:"pad,omitempty"`  // one more opened, to make the free count odd
}

// EpollRound is one epoll_wait(timeout 0) on a listener whose queue is not empty, and the
// accept4 after it.
type EpollRound struct {
	Ready       int    `json:"ready"`        // epoll_wait's return
	Listener    bool   `json:"listener"`     // the listener was among the events, with EPOLLIN
	AcceptErrno string `json:"accept_errno"` // the accept4 tried after it
}

// ShedClient is one client of the shedding server, and what its first read returned.
type ShedClient struct {
	Phase   string `json:"phase"`           // "fill": until the server runs out; "window": during the CPU window
	Port    uint16 `json:"port"`            // the client's port (getsockname)
	Read    int    `json:"read"`            // the first read's return: >0 the server's greeting, 0 end-of-stream
	Errno   string `json:"errno,omitempty"` // the first read's errno, when it failed
	AfterUS int64  `json:"after_us"`        // from connect's return to the read's
	State   string `json:"state"`           // TCP_INFO state after the read
	// SocketEMFILE counts the client's own socket() calls that met EMFILE for an instant,
	// while the server's accept4 held a descriptor number.
	SocketEMFILE int `json:"socket_emfile,omitempty"`
	// A served client: what its first read returned, and its connection as its own kernel
	// names it (getsockname -> getpeername), which the greeting should repeat.
	Greeting string `json:"greeting,omitempty"`
	Tuple    string `json:"tuple,omitempty"`
}

// CPUWindow is the CPU time the process used over a window of wall time, and what ran in it.
type CPUWindow struct {
	Loop     string  `json:"loop"`      // what ran during the window
	WindowUS int64   `json:"window_us"` // wall time
	CPUUS    int64   `json:"cpu_us"`    // utime+stime over the window (getrusage RUSAGE_SELF)
	Percent  float64 `json:"percent"`   // of one core
}

// Measured fills in the window's wall and CPU time, and the CPU's share of one core.
func (c *CPUWindow) Measured(wall, cpu time.Duration) {
	c.WindowUS, c.CPUUS = wall.Microseconds(), cpu.Microseconds()
	c.Percent = 100 * cpu.Seconds() / wall.Seconds()
}

// BusyLoop is the bare loop of the EMFILE proof, epoll_wait then accept4 over and over, with
// what the kernel answered each call, counted.
type BusyLoop struct {
	CPUWindow
	TimeoutMS     int64 `json:"timeout_ms"`     // epoll_wait's timeout argument
	EpollWaits    int   `json:"epoll_waits"`    // calls in the window
	ListenerReady int   `json:"listener_ready"` // returned 1: the listener, with EPOLLIN
	TimedOut      int   `json:"timed_out"`      // returned 0: slept the whole timeout
	Interrupted   int   `json:"interrupted"`    // failed with EINTR: slept, until a signal
	AcceptEMFILE  int   `json:"accept_emfile"`  // accept4 calls after them that failed with EMFILE
	// AcceptOther counts accept4's other answers by errno ("none": it returned a descriptor).
	AcceptOther map[string]int `json:"accept_other,omitempty"`
}
