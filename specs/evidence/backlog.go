package evidence

// Chapter 4's entries, the accept queue (ch04_backlog_test.go): all start with "backlog_".
//
//	"backlog_queue"         QueueSeen        a queue as clients join it, before and after one accept()
//	"backlog_client_states" []ClientState    each of those clients' tcpi_state
//	"backlog_fill"          []Fill           listeners of backlog 0, 1, 2 filled, and the next client
//	"backlog_somaxconn"     BacklogCap       a backlog and the limit net.core.somaxconn left it
//	"backlog_counters"      CountersSeen     TcpExt ListenOverflows and ListenDrops around a drop
//	"backlog_overflow"      Overflow         a connect() to a full queue, over time
//	"backlog_packets"       []OverflowPacket the segments of that connect(), on lo's clock
//	"backlog_open"          OpenConnections  a backlog-1 listener behind a thousand open connections
const (
	// EntryBacklogQueue is a QueueSeen: a listener's accept queue (TCP_INFO tcpi_unacked and
	// tcpi_sacked) before the first client, after each one, and after one accept().
	EntryBacklogQueue = "backlog_queue"
	// EntryBacklogStates is a []ClientState: each client socket's tcpi_state, by its address.
	EntryBacklogStates = "backlog_client_states"
	// EntryBacklogFill is a []Fill: listeners by backlog, the connections each queue took,
	// and what became of the next client.
	EntryBacklogFill = "backlog_fill"
	// EntryBacklogCap is a BacklogCap: a backlog above net.core.somaxconn and the maximum the
	// kernel applied, against the article's "about 5-10" and the default 4096.
	EntryBacklogCap = "backlog_somaxconn"
	// EntryBacklogCounters is a CountersSeen: TcpExt ListenOverflows and ListenDrops before
	// and after a SYN met a full queue, in a sandbox where nothing else moves them.
	EntryBacklogCounters = "backlog_counters"
	// EntryBacklogOverflow is an Overflow: a connect() to a full queue, in µs after it
	// began: the state while dropped, the server's accept(), the retransmitted SYN, the end.
	EntryBacklogOverflow = "backlog_overflow"
	// EntryBacklogPackets is a []OverflowPacket: the segments lo carried for the listener's
	// port, in µs after the first one (kernel timestamps), oldest first.
	EntryBacklogPackets = "backlog_packets"
	// EntryBacklogOpen is an OpenConnections: refserver with backlog 1 holding a thousand
	// connections.
	EntryBacklogOpen = "backlog_open"
)

// QueueSeen is a listener's accept queue while clients connected and none was accepted.
type QueueSeen struct {
	Listener    string   `json:"listener"`     // the listener's address (getsockname)
	Backlog     int      `json:"backlog"`      // listen()'s argument
	Somaxconn   int      `json:"somaxconn"`    // read from /proc/sys/net/core/somaxconn
	Max         uint32   `json:"max"`          // tcpi_sacked
	Lens        []uint32 `json:"lens"`         // tcpi_unacked before the first client, then after each
	Accepted    string   `json:"accepted"`     // the peer the one accept() returned
	AfterAccept uint32   `json:"after_accept"` // tcpi_unacked after it
}

// ClientState is a client socket and its state, TCP_INFO tcpi_state as ss(8) spells it.
type ClientState struct {
	Client string `json:"client"` // getsockname
	State  string `json:"state"`  // "ESTABLISHED" for a queued client, "SYN_SENT" for one left out
}

// NextClient is the client that came when the accept queue was full.
type NextClient struct {
	Client string `json:"client"` // getsockname on its socket
	State  string `json:"state"`  // tcpi_state while the queue stayed full: SYN_SENT
	Queued uint32 `json:"queued"` // the listener's tcpi_unacked meanwhile
	// How its connect() ended where the proof waited for that: the errno (ETIMEDOUT, once
	// TCP_USER_TIMEOUT expired with no answer), when, the state it left the socket in, and
	// how often its kernel had sent the SYN again by then (tcpi_total_retrans).
	Errno       string `json:"errno,omitempty"`
	AfterUS     int64  `json:"after_us,omitempty"`
	StateAfter  string `json:"state_after,omitempty"`
	Retransmits uint32 `json:"retransmits,omitempty"`
	// UserTimeoutMS is TCP_USER_TIMEOUT as getsockopt read it back, where the proof set it.
	UserTimeoutMS int `json:"user_timeout_ms,omitempty"`
}

// Fill is one listener filled to the brim: the clients whose connect() completed, the queue
// they made, and the next client.
type Fill struct {
	Listener  string        `json:"listener"`  // the listener's address (getsockname)
	Backlog   int           `json:"backlog"`   // listen()'s argument
	Max       uint32        `json:"max"`       // tcpi_sacked: the limit the kernel applied
	Completed []ClientState `json:"completed"` // the clients whose connect() returned 0
	Queued    uint32        `json:"queued"`    // tcpi_unacked once they had
	Next      NextClient    `json:"next"`      // the one more client, whose SYN the full queue dropped
}

// BacklogCap is a listen() backlog and the maximum the kernel applied, under the
// net.core.somaxconn of the namespace the listener was in, set against the article's figure.
type BacklogCap struct {
	// Where: "host" (somaxconn read only); "new namespace" (somaxconn as the kernel set up
	// the namespace, untouched: its default); "sandbox" (somaxconn lowered there);
	// "refserver" (refserver's own listener, with somaxconn raised there).
	Where     string        `json:"where"`
	Somaxconn int           `json:"somaxconn"`          // /proc/sys/net/core/somaxconn, where the listener was
	Backlog   int           `json:"backlog"`            // listen()'s argument; for refserver, Config.Backlog
	Max       uint32        `json:"max"`                // tcpi_sacked
	Article   string        `json:"article"`            // the article's figure for the queue's size
	Fill      *Fill         `json:"fill,omitempty"`     // the sandbox fills the capped queue
	Counters  *CountersSeen `json:"counters,omitempty"` // and counts the SYN it drops
}

// CountersSeen is TcpExt (/proc/net/netstat) in the sandbox before and after the SYN that
// found the queue full, by counter name, as lab.TCPExt reads them: ListenOverflows (the
// queue was full) and ListenDrops (the SYN was dropped, for that or any other reason).
type CountersSeen struct {
	Before map[string]int64 `json:"before"` // just before the client's connect()
	After  map[string]int64 `json:"after"`  // once ListenOverflows had risen
	Delta  map[string]int64 `json:"delta"`  // After less Before: the drop the proof caused
}

// Overflow is one client's connect() to a listener whose queue was full, over time.
type Overflow struct {
	AbortOnOverflow string `json:"tcp_abort_on_overflow"` // read back in the sandbox
	Listener        string `json:"listener"`              // the listener's address (getsockname)
	Filler          string `json:"filler"`                // the client that filled the queue
	Client          string `json:"client"`                // the client that found it full
	QueueLen        uint32 `json:"queue_len"`             // tcpi_unacked when the client's SYN came
	QueueMax        uint32 `json:"queue_max"`             // tcpi_sacked
	StateFull       string `json:"state_full"`            // the client's tcpi_state once its SYN was dropped
	RTOUS           uint32 `json:"rto_us"`                // the client's tcpi_rto then: when it sends the SYN again
	AcceptedFirst   string `json:"accepted"`              // the peer the server's accept() returned
	AcceptAtUS      int64  `json:"accept_at_us"`          // when, after the client's connect() began
	StateAccepted   string `json:"state_accepted"`        // the client's tcpi_state right after that accept()
	ConnectErr      string `json:"connect_err,omitempty"` // what sock.Connect returned; "" for success
	EstablishedUS   int64  `json:"established_us"`        // when connect() returned, after it began
	StateAfter      string `json:"state_after"`           // the client's tcpi_state then
	// Retransmits is the client's tcpi_total_retrans then: how often its kernel sent a
	// segment again, here the SYN.
	Retransmits    uint32 `json:"retransmits"`
	AcceptedSecond string `json:"accepted_next"` // the peer of the next accept()
	// SynGapUS is the capture's kernel timestamps of the client's first SYN and its
	// retransmission, apart.
	SynGapUS int64 `json:"syn_gap_us"`
}

// OverflowPacket is one captured segment on the timeline of the backlog.full proof. It is
// not a Segment: its time is relative (at_us, not the absolute time), its addresses are text,
// and it says who sent it and in which phase of the proof, which a Segment does not know.
type OverflowPacket struct {
	AtUS  int64  `json:"at_us"` // µs after the first captured segment, kernel timestamps (SO_TIMESTAMPNS)
	Phase string `json:"phase"` // "before accept" or "after accept": when the proof read it
	From  string `json:"from"`  // "filler", "client" or "server"
	Src   string `json:"src"`   // the sender's address and port
	Dst   string `json:"dst"`   // the receiver's
	Flags string `json:"flags"` // "SYN", "SYN,ACK", "ACK"; an "RST" would be a refusal
	Seq   uint32 `json:"seq"`   // relative to the sender's ISN, as Segment's
	Ack   uint32 `json:"ack"`   // relative to the receiver's ISN; 0 without the ACK flag
	Len   int    `json:"len"`   // payload bytes
}

// OpenConnections is refserver's listener with backlog 1 while a thousand clients are open.
type OpenConnections struct {
	Listener    string `json:"listener"`    // refserver's address (Server.Addr)
	Backlog     int    `json:"backlog"`     // refserver.Config.Backlog
	QueueMax    uint32 `json:"queue_max"`   // tcpi_sacked, with every client open
	QueueLen    uint32 `json:"queue_len"`   // tcpi_unacked then
	Established int    `json:"established"` // client sockets in ESTABLISHED (TCP_INFO)
	Echoed      int    `json:"echoed"`      // clients that read their byte back
	// DescriptorsBefore and DescriptorsAfter are the process's open descriptors
	// (/proc/self/fd) before the first client and with every client open; PerConnection is
	// what each open connection cost, the client's socket and accept4's.
	DescriptorsBefore int     `json:"descriptors_before"`
	DescriptorsAfter  int     `json:"descriptors_after"`
	PerConnection     float64 `json:"descriptors_per_connection"`
	ServerOpen        int64   `json:"server_open"`     // refserver's Stats: connections it holds
	ServerAccepted    uint64  `json:"server_accepted"` // and has accepted
	ConnectUS         int64   `json:"connect_us"`      // the thousand connects and echoes, in all
}
