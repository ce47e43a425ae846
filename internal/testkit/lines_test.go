//go:build linux

package testkit

import (
	"log"
	"slices"
	"testing"
	"time"
)

// TestLines: lines are cut at newlines whatever the writes' sizes, the zero value works as
// a log.Logger's destination, and Wait wakes for a line written after it began.
func TestLines(t *testing.T) {
	var l Lines
	for _, w := range []string{"acc", "ept4 = 5\nclose(5", ")\n", "part"} {
		l.Write([]byte(w))
	}
	if got, want := l.All(), []string{"accept4 = 5", "close(5)"}; !slices.Equal(got, want) {
		t.Errorf("All() = %q, want %q", got, want)
	}
	if got, want := l.String(), "accept4 = 5\nclose(5)\npart"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if s, err := l.Wait("close", time.Second); s != "close(5)" || err != nil {
		t.Errorf("Wait(close) = %q, %v", s, err)
	}
	go log.New(&l, "", 0).Print("stats: open 0")
	if s, err := l.Wait("stats:", 5*time.Second); s != "partstats: open 0" || err != nil {
		t.Errorf("Wait(stats:) = %q, %v", s, err)
	}
	if _, err := l.Wait("never", 10*time.Millisecond); err == nil {
		t.Error("Wait for a line never written returned no error")
	}
}
