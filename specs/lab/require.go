//go:build linux

package lab

import (
	"errors"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"portproof/internal/testkit"
)

// InCI tells whether this run is CI's (.ci/run sets CI=true), by the rule every test of the
// project follows: testkit.InCI.
func InCI() bool { return testkit.InCI() }

// Require states a precondition of a proof that a machine may lack: a usable ::1, a
// privilege, a kernel feature. When ok is false the spec stops with why, one line that
// names what is missing. On a developer's machine that is a Skip. Under CI it is a
// failure, because CI never skips: a proof that did not run proved nothing, and a green CI
// must mean every claim was shown on that kernel.
func Require(ok bool, why string) {
	ginkgo.GinkgoHelper()
	if ok {
		return
	}
	if InCI() {
		ginkgo.Fail("CI never skips, and this proof could not run: " + why)
	}
	ginkgo.Skip(why)
}

// RunInSandbox runs the child in a sandbox (Child.Run) for a spec and returns its result.
// Where this machine allows no private network namespace the spec stops through Require,
// with the one line that says why and what to run instead; any other error fails it. what,
// when given, says what the child was asked, for that failure: Gomega's optional
// description, a string or a format and its arguments.
func RunInSandbox[A, R any](c Child[A, R], arg A, opts SandboxOptions, what ...any) R {
	ginkgo.GinkgoHelper()
	r, err := c.Run(arg, opts)
	if errors.Is(err, ErrNoSandbox) {
		Require(false, err.Error())
	}
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), what...)
	return r
}
