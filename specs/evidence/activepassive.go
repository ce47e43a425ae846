package evidence

// Chapter 6, active and passive sockets: what the kernel says of a listener and of the
// sockets it spawns, who may bind a port beside a listener, and how an SO_REUSEPORT group
// shares the connections. Beside "errno", "tuples" and "traffic", its entries are:
//
//	"socket_kinds"        []SocketSeen         sockets as the kernel describes them
//	"descriptors_spawned" DescriptorsSpawned   /proc/self/fd and the accept queue around accept
//	"bind_attempts"       []BindSeen           bind and listen on one port, and the answers
//	"reuseport_spread"    ReusePortSpread      an SO_REUSEPORT group's queues after a burst
//	"reuseport_repeat"    []ReusePortRepeat    the listener one 4-tuple landed on, twice

const (
	// EntrySocketKinds is a []SocketSeen: sockets as the kernel describes them (TCP_INFO
	// state, SO_ACCEPTCONN, getsockname, getpeername or its errno): passive next to active.
	EntrySocketKinds = "socket_kinds"
	// EntryDescriptorsSpawned is a DescriptorsSpawned: the process's descriptors
	// (/proc/self/fd) and the listener's accept queue (TCP_INFO) before the clients, after
	// connect, after accept.
	EntryDescriptorsSpawned = "descriptors_spawned"
	// EntryBindAttempts is a []BindSeen: bind and listen calls on one port, in order, with
	// the socket options set and the kernel's answer.
	EntryBindAttempts = "bind_attempts"
	// EntryReusePortSpread is a ReusePortSpread: how the kernel spread connections over an
	// SO_REUSEPORT group, each listener's accept queue (TCP_INFO) before any accept.
	EntryReusePortSpread = "reuseport_spread"
	// EntryReusePortRepeat is a []ReusePortRepeat: the listener one 4-tuple was queued on,
	// connected twice.
	EntryReusePortRepeat = "reuseport_repeat"
)

// SocketSeen is one socket as the kernel describes it.
type SocketSeen struct {
	Role       string `json:"role"`       // "listener", "client", "accepted", ...
	FD         int    `json:"fd"`         // the descriptor number socket(2) or accept4(2) returned
	State      string `json:"state"`      // sock.TCPState: tcpi_state from TCP_INFO
	AcceptConn int    `json:"acceptconn"` // getsockopt SO_ACCEPTCONN: 1 on a passive socket
	Local      string `json:"local"`      // getsockname
	Peer       string `json:"peer"`       // getpeername, or the errno name it failed with
}

// DescriptorsSpawned is what accept() costs in descriptors, and where the connections wait
// before.
type DescriptorsSpawned struct {
	Listener      int    `json:"listener"`       // the passive socket's descriptor
	Before        int    `json:"before"`         // open descriptors with the listener alone
	AfterConnect  int    `json:"after_connect"`  // after every client's connect(): clients only
	QueuedBefore  uint32 `json:"queued_before"`  // the listener's accept queue then (tcpi_unacked)
	AfterAccept   int    `json:"after_accept"`   // after accept4() took every queued connection
	QueuedAfter   uint32 `json:"queued_after"`   // the accept queue then
	Accepted      []int  `json:"accepted"`       // the descriptors accept4 returned
	ListenerState string `json:"listener_state"` // TCP_INFO state of the listener after the accepts
}

// BindSeen is one bind(2) or listen(2) and the kernel's answer.
type BindSeen struct {
	Socket  string   `json:"socket"`            // which socket, in the spec's words
	Call    string   `json:"call"`              // "bind" or "listen"
	Addr    string   `json:"addr"`              // the address and port it was given, or holds
	Options []string `json:"options,omitempty"` // socket options set before bind: "SO_REUSEADDR"
	Errno   string   `json:"errno,omitempty"`   // sock.ErrnoName of the failure; empty: success
}

// ReusePortShare is one listener of an SO_REUSEPORT group.
type ReusePortShare struct {
	FD     int    `json:"fd"`     // the listener's descriptor, to tell the group's sockets apart
	Local  string `json:"local"`  // getsockname: the same for the whole group
	Queued uint32 `json:"queued"` // its accept queue's length (TCP_INFO tcpi_unacked)
	Max    uint32 `json:"max"`    // its accept queue's limit (tcpi_sacked)
}

// ReusePortSpread is a refserver SO_REUSEPORT group after a burst of connections, before
// Serve.
type ReusePortSpread struct {
	Addr      string           `json:"addr"`      // refserver's address: every listener's getsockname
	Connected int              `json:"connected"` // client sockets whose connect() the kernel completed
	Listeners []ReusePortShare `json:"listeners"` // in the order of refserver's Listeners()
	Echoed    int              `json:"echoed"`    // clients that got their byte back once Serve ran
	Accepted  uint64           `json:"accepted"`  // refserver's Stats after Shutdown
	Closed    uint64           `json:"closed"`    // and the connections it closed: all it accepted
}

// ReusePortRepeat is one 4-tuple connected, reset, and connected again.
type ReusePortRepeat struct {
	Tuple  string `json:"tuple"`  // the client's tuple, both times the same
	First  int    `json:"first"`  // index in Listeners() of the listener whose queue grew
	Second int    `json:"second"` // the same, for the second connection
}
