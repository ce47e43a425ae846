package evidence

import "testing"

func TestParityName(t *testing.T) {
	for port, want := range map[uint16]string{0: "even", 1: "odd", 32768: "even", 60999: "odd"} {
		if got := ParityName(port); got != want {
			t.Errorf("ParityName(%d) = %q, want %q", port, got, want)
		}
	}
}
