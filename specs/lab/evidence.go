//go:build linux

package lab

import (
	"net/netip"

	"github.com/onsi/ginkgo/v2"

	"portproof/refserver/sock"
)

// Evidence is what a spec saw the kernel answer, attached to its report with Record. The
// suite writes the report as JSON (build/proof-report.json); a report entry there has the
// name given below and its value as JSON in "Value.AsJSON". The proof page and its pictures
// are drawn from these entries, so each name always carries the same shape of value:
//
//	"tuples"       []TupleSeen    connections as both ends read them: getsockname -> getpeername
//	"errno"        ErrnoSeen      a call the kernel refused, and the errno's name
//	"ports"        Ports          ports by role ("listener", "accepted", "connect", "bind"...)
//	"port_range"   PortRange      net.ipv4.ip_local_port_range, read from /proc
//	"port_pattern" PortPattern    how the kernel walked the range: shown, never asserted
//	"traffic"      []TrafficSeen  what each socket received, and from whom
//	"figures"      Figures        the numbers the chapter's prose cites, by name (see Cite)
//
// An entry may appear more than once in one spec (two refused calls: two "errno").
const (
	EntryTuples      = "tuples"
	EntryErrno       = "errno"
	EntryPorts       = "ports"
	EntryPortRange   = "port_range"
	EntryPortPattern = "port_pattern"
	EntryTraffic     = "traffic"
	EntryFigures     = "figures"
)

// Record attaches value to the running spec's report under name. It stays out of the
// console unless the spec fails or the run is verbose (go test -v): the JSON report always
// has it.
func Record(name string, value any) {
	ginkgo.GinkgoHelper()
	ginkgo.AddReportEntry(name, value, ginkgo.ReportEntryVisibilityFailureOrVerbose)
}

// Figures are the values a chapter's sentences quote, each named once: "accepted", "queue_max",
// "resent_after_ms". A chapter writes {{ claim.id:name }} where a number would go, and the docs
// build (docs/hooks/figures.py) puts in what this run recorded, so the prose always tells the
// reader's own kernel's answer and never one machine's. Every value is something the spec read
// from the kernel (and, where the claim rests on it, asserted), never a constant of the test.
// A value is a string, a number, or a list of them; the chapter chooses how to print it.
type Figures map[string]any

// Cite attaches figures to the running spec's report, for the chapter's prose. A spec may
// cite more than once; a later value of a name replaces an earlier one.
func Cite(f Figures) {
	ginkgo.GinkgoHelper()
	Record(EntryFigures, f)
}

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

// Refused builds the ErrnoSeen for err, returned by call on a socket bound to local and
// given remote.
func Refused(call string, err error, local, remote netip.AddrPort) ErrnoSeen {
	e := ErrnoSeen{Call: call, Errno: sock.ErrnoName(err)}
	if err != nil {
		e.Error = err.Error()
	}
	if local.IsValid() {
		e.Local = local.String()
	}
	if remote.IsValid() {
		e.Remote = remote.String()
	}
	return e
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

// StepsOf is the differences between consecutive ports.
func StepsOf(ports []uint16) []int {
	steps := make([]int, 0, len(ports))
	for i := 1; i < len(ports); i++ {
		steps = append(steps, int(ports[i])-int(ports[i-1]))
	}
	return steps
}

// TrafficSeen is data a socket received: its protocol and address, the sender's address as
// getpeername or recvfrom(2) told it, and the bytes.
type TrafficSeen struct {
	Proto   string `json:"proto"`
	To      string `json:"to"`
	From    string `json:"from"`
	Payload string `json:"payload"`
}
