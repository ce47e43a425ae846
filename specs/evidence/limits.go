package evidence

import "syscall"

// Chapter 3, how many connections: a thousand on one listening port, the ephemeral range
// spent toward one destination and again toward others, and the descriptor limit. Beside
// "tuples", "errno", "ports", "port_range" and "port_pattern", its entries are:
//
//	"connections"        ConnectionCensus  a thousand connections on one port, counted twice
//	"port_range_default" DefaultRange      the host's range and a new namespace's, against 64K
//	"port_batches"       []PortBatch       connect() toward one destination until refused
//	"descriptors"        DescriptorsSeen   accept4 under a low RLIMIT_NOFILE, until EMFILE
//	"rlimit_nofile"      RlimitSeen        setrlimit(RLIMIT_NOFILE) and the kernel's ceilings
//
// The errno fields (errno_value) are syscall.Errno, which golang.org/x/sys/unix.Errno is, so
// that the spec asks errors.Is of the child's answer as of its own.

const (
	// EntryConnections is a ConnectionCensus, the census of many connections on one listening
	// port: how many the kernel holds ESTABLISHED, by TCP_INFO and by its own table.
	EntryConnections = "connections"
	// EntryPortRangeDefault is a DefaultRange: the ephemeral range the host uses and the one
	// the kernel gives a new network namespace, against the article's 64K.
	EntryPortRangeDefault = "port_range_default"
	// EntryPortBatches is a []PortBatch: connect() repeated toward one destination until the
	// kernel refused, the source ports it handed out, and the refusal.
	EntryPortBatches = "port_batches"
	// EntryDescriptors is a DescriptorsSeen: descriptors counted around each accept4 under a
	// low RLIMIT_NOFILE, the accept queue, and the ports in use.
	EntryDescriptors = "descriptors"
	// EntryRlimitNoFile is a RlimitSeen: setrlimit(RLIMIT_NOFILE) calls and what getrlimit
	// read back after each, the kernel's ceilings, and what the Go runtime does at start-up.
	EntryRlimitNoFile = "rlimit_nofile"
)

// ConnectionCensus is the census of limit.many-per-port.
type ConnectionCensus struct {
	Listener        string   `json:"listener"`          // the listener's getsockname
	Established     int      `json:"established"`       // pairs with both ends ESTABLISHED by TCP_INFO
	KernelTable     int      `json:"kernel_table"`      // ESTABLISHED sockets on the listener's address and port in /proc/net/tcp(6)
	DistinctTuples  int      `json:"distinct_tuples"`   // different 4-tuples among the accepted sockets
	ServerLocal     []string `json:"server_local"`      // every distinct getsockname of the accepted sockets
	ClientPorts     int      `json:"client_ports"`      // different source ports among the clients
	ClientPortsLow  uint16   `json:"client_ports_low"`  // the lowest source port the clients' kernel chose
	ClientPortsHigh uint16   `json:"client_ports_high"` // and the highest
}

// DefaultRange is the correction of the 64K: what the ephemeral range really holds.
type DefaultRange struct {
	Host          PortRange `json:"host"`           // this machine's, read only
	KernelDefault PortRange `json:"kernel_default"` // a new network namespace's
	Article       int       `json:"article"`        // "64K": every 16-bit port
}

// --8<-- [start:limit-port-batch]

// PortBatch is connect() repeated toward one destination, from one source, until the
// kernel refused.
type PortBatch struct {
	// Batch says which destination or source, in the spec's words.
	Batch string `json:"batch"`
	// From is the address bound before connect (port 0); empty when connect chose it.
	From string `json:"from,omitempty"`
	// PortBy is the call that chose each source port: "connect" or "bind".
	PortBy string `json:"port_by"`
	To     string `json:"to"` // the server's address and port
	// Ports are each connection's source port, getsockname, in order; Established how
	// many of them TCP_INFO showed ESTABLISHED; Tuples each connection, as the client's
	// kernel holds it.
	Ports       []uint16 `json:"ports"`
	Established int      `json:"established"`
	Tuples      []string `json:"tuples"`
	// Refused is the bind or connect after the last success, and Errno its errno, for
	// errors.Is in the parent.
	Refused ErrnoSeen     `json:"refused"`
	Errno   syscall.Errno `json:"errno_value,omitempty"`
}

// --8<-- [end:limit-port-batch]

// --8<-- [start:limit-descriptors-seen]

// DescriptorsSeen is what limit.fd's child saw under a low RLIMIT_NOFILE.
type DescriptorsSeen struct {
	// Soft and Hard are RLIMIT_NOFILE, getrlimit in the child.
	Soft     uint64 `json:"soft"`
	Hard     uint64 `json:"hard"`
	Listener string `json:"listener"` // its getsockname
	// OpenAtStart counts the descriptors below Soft with the listener open, before any
	// client; Above lists those numbered Soft or more: inherited, they take no room below
	// Soft.
	OpenAtStart int              `json:"open_at_start"`
	Above       []OpenDescriptor `json:"above_limit"`
	// Clients are the client connections made before the first accept, and QueueBefore
	// the listener's TCP_INFO then.
	Clients     int         `json:"clients"`
	QueueBefore AcceptQueue `json:"queue_before"`
	// Accepted counts the accept4 calls that returned a descriptor; Steps are the
	// descriptors around each one whose after could be read.
	Accepted int              `json:"accepted"`
	Steps    []DescriptorStep `json:"steps"`
	// Refused is the accept4 that failed, Errno its errno. Then AllOpen says whether
	// fcntl(F_GETFD) answered for every number below Soft, and QueueAtRefusal is the
	// listener's TCP_INFO.
	Refused        ErrnoSeen     `json:"refused"`
	Errno          syscall.Errno `json:"errno_value,omitempty"`
	AllOpen        bool          `json:"all_open"`
	QueueAtRefusal AcceptQueue   `json:"queue_at_refusal"`
	// PortsUsed counts the distinct local ports of the namespace's sockets (clients and
	// listener), out of Range, the ephemeral range in the child.
	PortsUsed int       `json:"ports_used"`
	Range     PortRange `json:"range"`
}

// DescriptorStep is the descriptors numbered below the soft limit, counted just before and
// just after one accept4.
type DescriptorStep struct {
	Before int `json:"before"` // /proc/self/fd just before the call
	After  int `json:"after"`  // and just after it: one more, the accepted socket's
}

// OpenDescriptor is one open descriptor: its number and what /proc/self/fd links it to.
type OpenDescriptor struct {
	FD     int    `json:"fd"`     // its number, Soft or above
	Target string `json:"target"` // "pipe:[112572]", "/dev/null"
}

// AcceptQueue is a listener's accept queue from TCP_INFO, as sock.AcceptQueueOf reads it: on
// a socket in LISTEN, tcpi_unacked is the queue's length and tcpi_sacked its maximum. Its
// fields are sock.AcceptQueue's, untagged, so that the JSON keys are the Go names, Len and Max,
// and the one converts to the other.
type AcceptQueue struct {
	Len uint32 // connections waiting now (sk_ack_backlog)
	Max uint32 // the kernel's limit, min(backlog, net.core.somaxconn) (sk_max_ack_backlog)
}

// --8<-- [end:limit-descriptors-seen]

// --8<-- [start:limit-rlimit-seen]

// RlimitSeen is limit.fd-config's evidence.
type RlimitSeen struct {
	Host    Rlimit          `json:"host"`     // the test process's own, read only
	NrOpen  uint64          `json:"nr_open"`  // fs.nr_open: no hard limit above it
	FileMax uint64          `json:"file_max"` // fs.file-max: open files in the whole system
	Start   Rlimit          `json:"start"`    // the child's at the start
	Calls   []SetrlimitSeen `json:"calls"`    // the soft limit moved
	GoStart []GoStartSeen   `json:"go_start"` // a Go program handed a low soft limit, then hard
	// Dropped lowers the hard limit and raises it back from a thread without
	// CAP_SYS_RESOURCE; Kept raises it again from a thread with the process's own
	// capabilities; UserNS does both in a user namespace, whose root holds every capability
	// in it. UserNSRefused says why there was no UserNS, where none was allowed.
	Dropped       HardLimitSeen  `json:"hard_cap_dropped"`
	Kept          HardLimitSeen  `json:"hard_cap_kept"`
	UserNS        *HardLimitSeen `json:"hard_user_ns,omitempty"`
	UserNSRefused string         `json:"user_ns_refused,omitempty"`
	// CapNote says, where it is so, that no thread held CAP_SYS_RESOURCE where it counts.
	CapNote string `json:"cap_sys_resource_note,omitempty"`
}

// Rlimit is RLIMIT_NOFILE as getrlimit(2) reads it.
type Rlimit struct {
	Soft uint64 `json:"soft"` // the limit alloc_fd enforces: EMFILE at this many descriptors
	Hard uint64 `json:"hard"` // the ceiling an unprivileged process may raise Soft to
}

// SetrlimitSeen is one setrlimit(RLIMIT_NOFILE) and what getrlimit read afterwards.
type SetrlimitSeen struct {
	Call  string        `json:"call"`                  // what the call tries, in the spec's words
	Soft  uint64        `json:"soft"`                  // asked for
	Hard  uint64        `json:"hard"`                  // asked for
	Errno syscall.Errno `json:"errno_value,omitempty"` // for errors.Is in the parent
	Name  string        `json:"errno,omitempty"`       // its name; empty when it succeeded
	Error string        `json:"error,omitempty"`       // the error as Go prints it
	After Rlimit        `json:"after"`                 // getrlimit right after
}

// HardLimitSeen is one thread's attempt to raise the hard limit, and what that thread was.
type HardLimitSeen struct {
	Thread string `json:"thread"` // in the spec's words
	// InitialUserNS: the process is in the initial user namespace, where capable() looks.
	InitialUserNS bool `json:"initial_user_ns"`
	// CapEff is the thread's effective capabilities, /proc/thread-self/status, in hex.
	CapEff      string          `json:"cap_eff"`
	CapResource bool            `json:"cap_sys_resource"` // CAP_SYS_RESOURCE among CapEff
	NrOpen      uint64          `json:"nr_open"`          // fs.nr_open, read just before
	Calls       []SetrlimitSeen `json:"calls"`            // the thread's setrlimit calls, in order
}

// GoStartSeen is a Go program's RLIMIT_NOFILE as its first code reads it, against what
// getrlimit read in its parent just before starting it.
type GoStartSeen struct {
	Handed  Rlimit `json:"handed"`   // getrlimit in the parent, before it started the program
	AtStart Rlimit `json:"at_start"` // getrlimit as the program's own first code
}

// --8<-- [end:limit-rlimit-seen]
