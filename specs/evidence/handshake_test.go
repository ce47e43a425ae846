package evidence

import (
	"testing"
	"time"
)

func TestCPUWindowMeasured(t *testing.T) {
	c := CPUWindow{Loop: "a loop"}
	c.Measured(200*time.Millisecond, 50*time.Millisecond)
	want := CPUWindow{Loop: "a loop", WindowUS: 200_000, CPUUS: 50_000, Percent: 25}
	if c != want {
		t.Errorf("Measured(200ms, 50ms) = %+v, want %+v", c, want)
	}
}
