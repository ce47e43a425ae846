package testkit

import (
	"slices"
	"testing"
)

// TestChildEnv: the child's environment is this one, with the variables asked and the
// race detector's exit sleep off, after whatever GORACE already said.
func TestChildEnv(t *testing.T) {
	t.Setenv("GORACE", "halt_on_error=1")
	t.Setenv("TESTKIT_INHERITED", "yes")
	env := ChildEnv("TESTKIT_CHILD=1")
	for _, want := range []string{"TESTKIT_INHERITED=yes", "TESTKIT_CHILD=1"} {
		if !slices.Contains(env, want) {
			t.Errorf("%s is not in the child's environment", want)
		}
	}
	if last := env[len(env)-1]; last != "GORACE=halt_on_error=1 atexit_sleep_ms=0" {
		t.Errorf("the last variable is %q, want GORACE with atexit_sleep_ms=0 after what it said", last)
	}
}
