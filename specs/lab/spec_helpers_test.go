//go:build linux

package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/types"
	. "github.com/onsi/gomega"

	"portproof/internal/netns"
	"portproof/refserver/sock"
)

// The helpers that report through Ginkgo (RunInSandbox, TCPState, SysctlInt) are tested in
// a suite of their own, as specs.

func TestSpecHelpers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "lab's spec helpers")
}

var (
	doubles        = RegisterChild("lab-test.double", func(n int) (int, error) { return 2 * n, nil })
	refuses        = RegisterChild("lab-test.refuse", func(struct{}) (struct{}, error) { return struct{}{}, errors.New("the child's own words") })
	errNoNamespace = fmt.Errorf("%w (netns: EPERM; userns+netns: EPERM): run as root", ErrNoSandbox)
)

const noSandboxSpec = "stops the spec through Require, with the reason in one line"

var _ = Describe("RunInSandbox", func() {
	It("hands back the child's result", func() {
		Expect(RunInSandbox(doubles, 21, SandboxOptions{})).To(Equal(42))
	})

	It("fails the spec with the child's error", func() {
		failures := InterceptGomegaFailures(func() { RunInSandbox(refuses, struct{}{}, SandboxOptions{}) })
		Expect(failures).To(HaveLen(1))
		Expect(failures[0]).To(ContainSubstring("the child's own words"))
	})

	It("says what the child was asked, when told", func() {
		failures := InterceptGomegaFailures(func() { RunInSandbox(refuses, struct{}{}, SandboxOptions{}, "refuse number %d", 7) })
		Expect(failures).To(HaveLen(1))
		Expect(failures[0]).To(And(ContainSubstring("refuse number 7"), ContainSubstring("the child's own words")))
	})

	Context("where the machine allows no namespace", func() {
		It(noSandboxSpec, func() {
			saved := chosenKind
			chosenKind = func() (netns.Kind, error) { return netns.Kind{}, errNoNamespace }
			DeferCleanup(func() { chosenKind = saved })
			// Off CI, Require skips; under CI it would fail the spec, which is Require's rule.
			ci, set := os.LookupEnv("CI")
			os.Setenv("CI", "false")
			DeferCleanup(func() {
				if set {
					os.Setenv("CI", ci)
				} else {
					os.Unsetenv("CI")
				}
			})
			RunInSandbox(doubles, 1, SandboxOptions{})
			Fail("RunInSandbox came back with no namespace to run in")
		})
	})
})

// A skipped spec cannot be failed after its skip, so the suite checks the skip once done.
var _ = ReportAfterSuite("RunInSandbox skipped with the reason", func(rep Report) {
	for _, r := range rep.SpecReports {
		if r.LeafNodeText == noSandboxSpec && (r.State != types.SpecStateSkipped || r.Failure.Message != errNoNamespace.Error()) {
			Fail(fmt.Sprintf("want a skip that says %q; got %s: %q", errNoNamespace, r.State, r.Failure.Message))
		}
	}
})

var _ = Describe("TCPState", func() {
	It("names a listener's state and a connection's", func() {
		l := Listen(netip.MustParseAddrPort("127.0.0.1:0"), 8)
		Expect(TCPState(l.FD())).To(Equal("LISTEN"))
		c := Dial(l.Addr)
		Expect(TCPState(c.FD())).To(Equal("ESTABLISHED"))
	})

	It("fails the spec on a descriptor that is no TCP socket", func() {
		failures := InterceptGomegaFailures(func() { TCPState(int(os.Stdin.Fd())) })
		Expect(failures).To(HaveLen(1))
	})
})

var _ = Describe("AcceptQueue", func() {
	It("reads a listener's queue and its limit", func() {
		l := Listen(netip.MustParseAddrPort("127.0.0.1:0"), 8)
		Expect(AcceptQueue(l.FD())).To(Equal(sock.AcceptQueue{Len: 0, Max: 8}))
		Dial(l.Addr)
		Eventually(func() uint32 { return AcceptQueue(l.FD()).Len }).WithTimeout(AcceptWithin).
			Should(Equal(uint32(1)), "the connection nobody accepted")
	})

	It("fails the spec on a descriptor that is no TCP socket", func() {
		failures := InterceptGomegaFailures(func() { AcceptQueue(int(os.Stdin.Fd())) })
		Expect(failures).To(HaveLen(1))
	})
})

var _ = Describe("SysctlInt", func() {
	It("reads a setting that is one integer", func() {
		Expect(SysctlInt("net.core.somaxconn")).To(BeNumerically(">", 0))
	})

	It("fails the spec on a setting that is not one integer", func() {
		failures := InterceptGomegaFailures(func() { SysctlInt(PortRangeSysctl) })
		Expect(failures).To(HaveLen(1))
		Expect(strings.Join(failures, "")).To(ContainSubstring("not one integer"))
	})

	It("has a twin that returns the error, for a child", func() {
		n, err := ReadSysctlInt("net.core.somaxconn")
		Expect(err).NotTo(HaveOccurred())
		Expect(n).To(Equal(SysctlInt("net.core.somaxconn")))
		_, err = ReadSysctlInt(PortRangeSysctl)
		Expect(err).To(MatchError(ContainSubstring("not one integer")))
		_, err = ReadSysctlInt("net.no.such.setting")
		Expect(err).To(MatchError(ContainSubstring("read net.no.such.setting")))
	})
})
