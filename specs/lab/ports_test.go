//go:build linux

package lab

import (
	"strings"
	"testing"

	"portproof/specs/evidence"
)

// TestParsePortRange: the range as the kernel writes it back, tab between, and what is not
// a range.
func TestParsePortRange(t *testing.T) {
	r, err := parsePortRange("40000\t40009\n")
	if want := (evidence.PortRange{Low: 40000, High: 40009, Size: 10, Sysctl: PortRangeSysctl}); r != want || err != nil {
		t.Errorf("parsePortRange = %+v, %v; want %+v", r, err, want)
	}
	for _, bad := range []string{"", "40000", "40009 40000", "1 70000", "a b", "1 2 3"} {
		if r, err := parsePortRange(bad); err == nil || !strings.Contains(err.Error(), PortRangeSysctl) {
			t.Errorf("parsePortRange(%q) = %+v, %v; want an error naming the sysctl", bad, r, err)
		}
	}
	// The process's own namespace has a range, whatever it is.
	if r, err := ReadPortRange(); err != nil || r.Low == 0 || r.Size != int(r.High-r.Low)+1 {
		t.Errorf("ReadPortRange = %+v, %v", r, err)
	}
}
