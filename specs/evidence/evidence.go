// Package evidence is the shape of what the specs attach to the proof report: the name of
// each entry and the Go type its JSON value is. The specs record these values (lab.Record);
// cmd/proofreport reads the same types back to draw the pictures and fill in the figures,
// so a field a spec adds or renames is one edit, seen by both. It imports only the standard
// library: the report's reader needs no test harness to decode it.
//
// The suite writes the report as JSON (build/proof-report.json); an entry there has its
// name below and its value as JSON in "Value.AsJSON". Each name always carries the same
// shape of value, and a name may appear more than once in one spec (two refused calls: two
// "errno"). The entries every chapter uses:
//
//	"tuples"       []TupleSeen    connections as both ends read them: getsockname -> getpeername
//	"errno"        ErrnoSeen      a call the kernel refused, and the errno's name
//	"ports"        Ports          ports by role ("listener", "accepted", "connect", "bind"...)
//	"port_range"   PortRange      net.ipv4.ip_local_port_range, read from /proc
//	"port_pattern" PortPattern    how the kernel walked the range: shown, never asserted
//	"traffic"      []TrafficSeen  what each socket received, and from whom
//	"figures"      Figures        the numbers the chapter's prose cites, by name
//	"machine"      Machine        whose kernel answered: recorded once, before any spec
//
// A chapter's own entries are in its file here, named after its subject.
package evidence

const (
	EntryTuples      = "tuples"
	EntryErrno       = "errno"
	EntryPorts       = "ports"
	EntryPortRange   = "port_range"
	EntryPortPattern = "port_pattern"
	EntryTraffic     = "traffic"
	EntryFigures     = "figures"
	EntryMachine     = "machine"
)

// Figures are the values a chapter's sentences quote, each named once: "accepted", "queue_max",
// "resent_after_ms". A chapter writes {{ claim.id:name }} where a number would go, and the docs
// build (docs/hooks/figures.py) puts in what this run recorded, so the prose always tells the
// reader's own kernel's answer and never one machine's. Every value is something the spec read
// from the kernel (and, where the claim rests on it, asserted), never a constant of the test.
// A value is a string, a number, or a list of them; the chapter chooses how to print it.
type Figures map[string]any

// TupleSeen is one connection read from the kernel at both ends, each as Tuple.String()
// writes it, local end first: "tcp 127.0.0.1:40512 -> 127.0.0.1:7000".
type TupleSeen struct {
	Conn   string `json:"conn"`             // which connection, in the spec's words
	Client string `json:"client,omitempty"` // sock.TupleOf on the client's socket
	Server string `json:"server,omitempty"` // sock.TupleOf on the socket accept() returned
}

// ErrnoSeen is a system call the kernel refused.
type ErrnoSeen struct {
	Call   string `json:"call"`             // "connect", "bind"
	Errno  string `json:"errno"`            // sock.ErrnoName: "EADDRNOTAVAIL"
	Local  string `json:"local,omitempty"`  // the socket's own address (getsockname) when it failed
	Remote string `json:"remote,omitempty"` // the address the call was given
	Error  string `json:"error"`            // the error as Go prints it
}

// Ports lists the ports a spec read back from the kernel, by role, in the order observed.
type Ports map[string][]uint16

// PortPattern is how the kernel walked the port range: detail worth showing that the claims
// do not promise, so no spec asserts it.
type PortPattern struct {
	Parity map[string]Parity `json:"parity"` // by role, as in Ports: "connect", "bind"
	Steps  []int             `json:"steps"`  // differences between consecutive connect() ports to one destination
}

// Parity counts even and odd ports.
type Parity struct {
	Even int `json:"even"`
	Odd  int `json:"odd"`
}

// ParityOf counts the even and the odd ports.
func ParityOf(ports []uint16) Parity {
	var p Parity
	for _, port := range ports {
		if port%2 == 0 {
			p.Even++
		} else {
			p.Odd++
		}
	}
	return p
}

// ParityName is "even" or "odd", as port is.
func ParityName(port uint16) string {
	if port%2 == 0 {
		return "even"
	}
	return "odd"
}

// TrafficSeen is data a socket received: its protocol and address, the sender's address as
// getpeername or recvfrom(2) told it, and the bytes.
type TrafficSeen struct {
	Proto   string `json:"proto"`
	To      string `json:"to"`
	From    string `json:"from"`
	Payload string `json:"payload"`
}
