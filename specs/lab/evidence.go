//go:build linux

package lab

import (
	"net/netip"

	"github.com/onsi/ginkgo/v2"

	"portproof/refserver/sock"
	"portproof/specs/evidence"
)

// Record attaches value to the running spec's report under name. It stays out of the
// console unless the spec fails or the run is verbose (go test -v): the JSON report always
// has it.
func Record(name string, value any) {
	ginkgo.GinkgoHelper()
	ginkgo.AddReportEntry(name, value, ginkgo.ReportEntryVisibilityFailureOrVerbose)
}

// Cite attaches figures to the running spec's report, for the chapter's prose. A spec may
// cite more than once; a later value of a name replaces an earlier one.
func Cite(f evidence.Figures) {
	ginkgo.GinkgoHelper()
	Record(evidence.EntryFigures, f)
}

// Refused builds the ErrnoSeen for err, returned by call on a socket bound to local and given
// remote.
func Refused(call string, err error, local, remote netip.AddrPort) evidence.ErrnoSeen {
	e := evidence.ErrnoSeen{Call: call, Errno: sock.ErrnoName(err)}
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

// StepsOf is the differences between consecutive ports.
func StepsOf(ports []uint16) []int {
	steps := make([]int, 0, len(ports))
	for i := 1; i < len(ports); i++ {
		steps = append(steps, int(ports[i])-int(ports[i-1]))
	}
	return steps
}
