package evidence

import "time"

// How a connection ends (chapter 7): each proof runs in a sandbox of its own, where lo
// carries its segments alone and /proc/net/tcp lists its sockets alone. The docs draw the
// chapter's picture from "close_timewait". Its entries, all starting with "close_":
//
//	"close_half"       HalfClose       shutdown(SHUT_WR) on one end, the other still talking
//	"close_linger"     LingeringClose  refserver's Shutdown while its client still sends
//	"close_unread"     []UnreadClose   close(2) with unread input, then with it read first
//	"close_timewait"   TimeWait        the first closer's TIME_WAIT, then SO_LINGER {1, 0}
//	"close_timers"     []CloseTimer    FIN_WAIT2's and TIME_WAIT's timers, read and summed
//	"close_reuseaddr"  ReuseAddr       refserver restarted on a port held in TIME_WAIT
//	"close_listener"   ListenerReset   refserver stopped with connections in its accept queue

const (
	EntryCloseHalf      = "close_half"      // a HalfClose
	EntryCloseLinger    = "close_linger"    // a LingeringClose
	EntryCloseUnread    = "close_unread"    // a []UnreadClose: without and with a read first
	EntryCloseTimeWait  = "close_timewait"  // a TimeWait, with its SO_LINGER {1, 0} variant
	EntryCloseTimers    = "close_timers"    // a []CloseTimer: FIN_WAIT2's, then TIME_WAIT's
	EntryCloseReuseAddr = "close_reuseaddr" // a ReuseAddr
	EntryCloseListener  = "close_listener"  // a ListenerReset
)

// CloseEnds is what a close proof records of a connection before anything else: its two
// ends, the calls made on them, and the states it read, in order.
type CloseEnds struct {
	Client string      `json:"client"` // the client's end (getsockname): who sent a segment
	Server string      `json:"server"` // the server's end, the listener's address
	Calls  Calls       `json:"calls"`  // on either end, in the order made
	States []StateSeen `json:"states"` // TCP_INFO or /proc/net/tcp, in the order read
}

// Note keeps the state read, whatever err says, and returns err: a reading that did not
// reach the state waited for is evidence too.
func (e *CloseEnds) Note(s StateSeen, err error) error {
	e.States = append(e.States, s)
	return err
}

// HalfClose is the half-close: one end shut for writing while the other still talks.
type HalfClose struct {
	CloseEnds
	Read     string    `json:"read"`      // what the half-closed client read after its FIN
	WriteErr string    `json:"write_err"` // its write after shutdown(SHUT_WR)
	Packets  []Segment `json:"packets"`   // what lo carried, the handshake included
}

// LingeringClose is refserver ending a connection while its client still sends.
type LingeringClose struct {
	CloseEnds
	Echo         string    `json:"echo"`          // refserver's answer to "hello", before Shutdown
	LateUnacked  uint32    `json:"late_unacked"`  // the client's tcpi_unacked after its late bytes
	ShutdownErr  string    `json:"shutdown_err"`  // what refserver's Shutdown returned
	ShutdownDone time.Time `json:"shutdown_done"` // when it returned
	Resets       uint64    `json:"resets"`        // refserver's Stats().Resets
	Packets      []Segment `json:"packets"`       // what lo carried, the handshake included
}

// UnreadClose is one connection closed by its server, with or without reading first.
type UnreadClose struct {
	Case    string `json:"case"`    // "unread" or "read first"
	Client  string `json:"client"`  // the client's end: its segments are this connection's
	Server  string `json:"server"`  // the server's end, the listener's address
	Unread  int    `json:"unread"`  // SIOCINQ on the server's end before close
	Unacked uint32 `json:"unacked"` // the client's tcpi_unacked then: its bytes acknowledged
	// AbortOnClose is TcpExt TCPAbortOnClose's rise over the server's close(2).
	AbortOnClose int64       `json:"abort_on_close"`
	Received     []string    `json:"received"` // what each of the client's reads returned
	Calls        Calls       `json:"calls"`    // on either end, in the order made
	States       []StateSeen `json:"states"`   // the client's, after its last read
	Packets      []Segment   `json:"packets"`  // lo's segments to or from Client
}

// TimeWait is the close of one connection, the server's end closing first, and of a
// second with SO_LINGER {1, 0}.
type TimeWait struct {
	FinTimeout string `json:"tcp_fin_timeout"` // read back in the sandbox
	CloseEnds
	// Left is what the kernel's table holds of the connection at the end, by end: "server"
	// TIME_WAIT, and nothing for the client.
	Left    map[string]string `json:"left"`
	Packets []Segment         `json:"packets"` // the first connection's, on lo
	Linger  LingerReset       `json:"linger"`  // the second connection, on the same listener
}

// LingerReset is the second connection: the server's end closed with SO_LINGER {1, 0}.
type LingerReset struct {
	Read string `json:"read"` // the client's read after the server's close
	CloseEnds
	Left    map[string]string `json:"left"`    // as TimeWait's, after the RST
	Packets []Segment         `json:"packets"` // the second connection's, on lo
}

// CloseTimer is a timer the kernel's table showed, and how long it had run when read: their
// sum is the timer's whole length.
type CloseTimer struct {
	State   string  `json:"state"`    // FIN_WAIT2 or TIME_WAIT
	LeftMS  float64 `json:"left_ms"`  // tm->when in /proc/net/tcp
	RanMS   float64 `json:"ran_ms"`   // since the segment that started it crossed lo
	TotalMS float64 `json:"total_ms"` // the two together
}

// ReuseAddr is refserver started twice on one address: after the first run closed its
// connections first, and a plain bind() between the two.
type ReuseAddr struct {
	Addr string `json:"addr"` // both runs': the first's, its port the kernel's pick
	// TimeWaits are the first run's connections in TIME_WAIT once it stopped, its end first
	// (/proc/net/tcp), and TimeWaitsAfter the same once the second run served.
	TimeWaits      []string `json:"time_waits"`
	TimeWaitsAfter []string `json:"time_waits_after"`
	Listening      bool     `json:"listening"`  // a LISTEN row on the port while the TIME_WAITs held it
	PlainBind      string   `json:"plain_bind"` // a socket without SO_REUSEADDR: bind's errno
	Restart        string   `json:"restart"`    // refserver.New's error; "" for none
	ReuseAddr      int      `json:"reuseaddr"`  // SO_REUSEADDR read back on its listener
	Echo           string   `json:"echo"`       // what a client of the second run read back
	Narration      []string `json:"narration"`  // the second run's log of its listener's calls
}

// ListenerReset is refserver stopped with connections in its accept queue.
type ListenerReset struct {
	Listener  string        `json:"listener"`  // refserver's address: the RSTs' sender
	Queued    uint32        `json:"queued"`    // the accept queue (TCP_INFO) before Shutdown
	Clients   []ResetClient `json:"clients"`   // each queued connection, by its client
	Calls     Calls         `json:"calls"`     // the clients' writes and reads, and Shutdown
	Narration []string      `json:"narration"` // refserver's log of its Shutdown
	Packets   []Segment     `json:"packets"`   // the handshakes, the bytes, the RSTs, on lo
}

// ResetClient is one client of the stopped server.
type ResetClient struct {
	Client  string `json:"client"`  // its own end (getsockname)
	Before  string `json:"before"`  // its tcpi_state before Shutdown
	Unacked uint32 `json:"unacked"` // its tcpi_unacked then: its byte acknowledged
	Read    string `json:"read"`    // its read after Shutdown: the errno
	After   string `json:"after"`   // its tcpi_state then
}
