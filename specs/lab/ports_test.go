//go:build linux

package lab

import (
	"strings"
	"testing"
)

// TestParsePortRange: the range as the kernel writes it back, tab between, and what is not
// a range.
func TestParsePortRange(t *testing.T) {
	r, err := parsePortRange("40000\t40009\n")
	if want := (PortRange{Low: 40000, High: 40009, Size: 10, Sysctl: PortRangeSysctl}); r != want || err != nil {
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

func TestParityName(t *testing.T) {
	for port, want := range map[uint16]string{0: "even", 1: "odd", 32768: "even", 60999: "odd"} {
		if got := ParityName(port); got != want {
			t.Errorf("ParityName(%d) = %q, want %q", port, got, want)
		}
	}
}
