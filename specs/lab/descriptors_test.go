//go:build linux

package lab_test

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"portproof/specs/lab"
)

func TestDescriptorsBelowLeavesOutTheOnesAboveTheLimit(t *testing.T) {
	fds, err := lab.OpenDescriptorNumbers()
	if err != nil {
		t.Fatal(err)
	}
	high := max(1000, slices.Max(fds)+1)
	// dup3 puts a copy at exactly that number, as a shell's inherited pipe sits at 251.
	if err := unix.Dup3(0, high, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(high)
	after, err := lab.OpenDescriptorNumbers()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(after, high) || len(after) != len(fds)+1 {
		t.Errorf("descriptors %v, then %v after dup3 to %d", fds, after, high)
	}
	below, err := lab.DescriptorsBelow(high)
	if err != nil {
		t.Fatal(err)
	}
	if below != len(fds) {
		t.Errorf("DescriptorsBelow(%d) = %d, want %d: %v", high, below, len(fds), after)
	}
}
