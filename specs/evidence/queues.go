package evidence

import "time"

// The queues again (chapter 8): a handshake the server's kernel holds as a request
// (TCP_DEFER_ACCEPT), a full accept queue, a SYN flood. Each proof runs in a sandbox with its
// own lo, /proc/net/tcp and TcpExt counters, and its own tcp_abort_on_overflow and
// tcp_syncookies. The docs draw the chapter's picture from "queue_defer" and
// "queue_overflow". Its entries, all starting with "queue_":
//
//	"queue_defer"       QueueDefer     connect() returns while the server keeps a request
//	"queue_overflow"    QueueOverflow  deferred data meets a full accept queue
//	"queue_syncookies"  SynCookies     a SYN flood under one tcp_syncookies, then a client

const (
	EntryQueueDefer      = "queue_defer"      // a QueueDefer
	EntryQueueOverflow   = "queue_overflow"   // a QueueOverflow, once per tcp_abort_on_overflow
	EntryQueueSyncookies = "queue_syncookies" // a SynCookies, once per tcp_syncookies
)

// QueueView is one moment of a handshake, as each side's kernel tells it.
type QueueView struct {
	Moment string    `json:"moment"` // what had just happened
	At     time.Time `json:"at"`     // when both were read: the picture's row
	Client string    `json:"client"` // the client's tcpi_state (TCP_INFO)
	// Server is the server's end in /proc/net/tcp: "SYN_RECV" for a request, "ESTABLISHED"
	// for a connection, "" for nothing.
	Server   string `json:"server"`
	Queue    uint32 `json:"queue"`     // the listener's accept queue (TCP_INFO tcpi_unacked)
	QueueMax uint32 `json:"queue_max"` // its limit (tcpi_sacked)
	Unacked  uint32 `json:"unacked"`   // the client's tcpi_unacked: its segments not acknowledged
}

// QueueDefer is a deferred handshake: the client's connect() and first bytes.
type QueueDefer struct {
	Listener string      `json:"listener"` // the listener's address, TCP_DEFER_ACCEPT set
	Client   string      `json:"client"`   // the client's end: its segments are the story
	Defer    int         `json:"defer_s"`  // TCP_DEFER_ACCEPT read back
	Views    []QueueView `json:"views"`    // after connect(), then after the client's data
	Accept   string      `json:"accept"`   // accept4 before the data: the errno
	// Readable is poll(POLLIN) on the listener before the data: no wake-up for a request.
	Readable bool             `json:"readable"`
	Accepted string           `json:"accepted"` // the peer accept4 returned after it
	Read     string           `json:"read"`     // what the server read
	Counters map[string]int64 `json:"counters"` // TcpExt rises, over the handshake
	Calls    Calls            `json:"calls"`    // connect() and the reads and writes
	Packets  []Segment        `json:"packets"`  // the handshake and the data, on lo
}

// QueueOverflow is a deferred connection completed by data into a full accept queue.
type QueueOverflow struct {
	AbortOnOverflow string   `json:"tcp_abort_on_overflow"` // read back in the sandbox
	Listener        string   `json:"listener"`              // its backlog's queue is the one filled
	Fillers         []string `json:"fillers"`               // their ends: the connections that fill it
	Cookies         int64    `json:"cookies"`               // SyncookiesSent's rise over it all
	Client          string   `json:"client"`                // the deferred client's end
	// Views are the queue full before the client's bytes, then what those bytes met.
	Views       []QueueView      `json:"views"`
	Counters    map[string]int64 `json:"counters"`    // TcpExt rises once the client's data came
	Recv        string           `json:"recv"`        // the client's recv then
	Retransmits uint32           `json:"retransmits"` // the client's tcpi_total_retrans then
	Calls       Calls            `json:"calls"`       // the fillers' and the client's writes, its read
	Packets     []Segment        `json:"packets"`     // every handshake and byte on lo, an RST or not
}

// FloodSyn is one SYN of the flood and what the listener made of it.
type FloodSyn struct {
	Port    uint16 `json:"port"`    // its source port
	Answer  string `json:"answer"`  // "SYN,ACK", or "" when the listener answered nothing
	Cookie  bool   `json:"cookie"`  // SyncookiesSent rose for it: the SYN-ACK's ISN is a cookie
	Dropped bool   `json:"dropped"` // ListenDrops rose for it
	// SynRecv is the listener's requests in SYN_RECV in /proc/net/tcp once it was answered:
	// the state the listener keeps, which a cookie avoids.
	SynRecv int `json:"syn_recv"`
}

// SynCookies is a SYN flood against a listener under one tcp_syncookies, then a client.
type SynCookies struct {
	Syncookies     string           `json:"tcp_syncookies"`      // read back in the sandbox
	MaxSynBacklog  string           `json:"tcp_max_syn_backlog"` // read back: not the bound, Backlog is
	Listener       string           `json:"listener"`            // the flooded listener's address
	Backlog        int              `json:"backlog"`             // listen(2)'s: the SYN queue's bound
	Syns           []FloodSyn       `json:"syns"`                // the flood, in the order sent
	Client         string           `json:"client,omitempty"`    // a real client, after the flood
	Connected      string           `json:"connected"`           // its connect(): "0" or the errno
	ClientSynRecv  int              `json:"client_syn_recv"`     // SYN_RECV requests once it connected
	Read           string           `json:"read"`                // what the server read from it
	Counters       map[string]int64 `json:"counters"`            // TcpExt rises over it all
	ClientCounters map[string]int64 `json:"client_counters"`     // over the client's handshake
	Packets        []Segment        `json:"packets"`             // lo, to and from the listener's port
}
