//go:build linux

package lab

import (
	"github.com/onsi/ginkgo/v2"

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
