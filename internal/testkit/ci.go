package testkit

import (
	"os"
	"strconv"
	"testing"
)

// InCI tells whether this run is CI's, where a test that cannot run fails instead of
// skipping: a proof that did not run proved nothing. .ci/run sets CI=true; any value
// strconv.ParseBool takes as true counts (1, t, TRUE...), so that a CI system that says
// CI=1 is not mistaken for a developer's machine and let skip.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Require stops a test that cannot run here, saying why in one line: a skip on a developer's
// machine, a failure under CI.
func Require(t testing.TB, ok bool, why string) {
	t.Helper()
	switch {
	case ok:
	case InCI():
		t.Fatal("CI never skips, and this test could not run: " + why)
	default:
		t.Skip(why)
	}
}
