//go:build linux

package lab_test

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/lab"
)

func TestMain(m *testing.M) {
	lab.RunChildIfAsked()
	os.Exit(m.Run())
}

// requireSandbox skips the test where the machine allows no namespace, except under CI,
// which never skips. It returns the kind InSandbox uses.
func requireSandbox(t *testing.T) string {
	t.Helper()
	kind, err := lab.SandboxKind()
	if errors.Is(err, lab.ErrNoSandbox) && !lab.InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return kind
}

// sysctlsSeen is what a child read of its sysctls.
type sysctlsSeen struct {
	Values map[string]string // by name, as /proc/sys shows them in the child
	Bound  netip.AddrPort    // a socket bound to 127.0.0.1:0: the kernel's pick from the port range
}

var readSysctls = lab.RegisterChild("test.sysctls", func(names []string) (sysctlsSeen, error) {
	seen := sysctlsSeen{Values: map[string]string{}}
	for _, name := range names {
		v, err := sock.Sysctl(name)
		if err != nil {
			return seen, err
		}
		seen.Values[name] = strings.Join(strings.Fields(v), " ")
	}
	fd, err := sock.Socket(unix.AF_INET)
	if err != nil {
		return seen, err
	}
	defer unix.Close(fd)
	if err := sock.Bind(fd, netip.MustParseAddrPort("127.0.0.1:0")); err != nil {
		return seen, err
	}
	seen.Bound, err = sock.LocalAddr(fd)
	return seen, err
})

func TestSandboxSysctlsStayInTheNamespace(t *testing.T) {
	kind := requireSandbox(t)
	want := map[string]string{
		"net.ipv4.ip_local_port_range":   "40000 40009",
		"net.core.somaxconn":             "8",
		"net.ipv4.tcp_abort_on_overflow": "1",
	}
	names := slices.Sorted(maps.Keys(want))
	host := map[string]string{}
	for _, name := range names {
		v, err := sock.Sysctl(name)
		if err != nil {
			t.Fatal(err)
		}
		host[name] = v
	}
	seen, err := readSysctls.Run(names, lab.SandboxOptions{Sysctls: want})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(seen.Values, want) {
		t.Errorf("the child (%s) read %v, want %v", kind, seen.Values, want)
	}
	if p := seen.Bound.Port(); p < 40000 || p > 40009 {
		t.Errorf("bind(127.0.0.1:0) in the child got port %d, outside the narrowed range", p)
	}
	for _, name := range names {
		if after, err := sock.Sysctl(name); err != nil || after != host[name] {
			t.Errorf("the host's %s: %q before the child, %q after (%v)", name, host[name], after, err)
		}
	}
}

func TestSandboxCannotReachAHostSysctl(t *testing.T) {
	requireSandbox(t)
	// Each child is handed the host's own value, so that even a kernel that let the write
	// through would change nothing.
	for name, want := range map[string]error{
		"net.core.rmem_max":           fs.ErrPermission, // a read-only copy outside the initial namespace
		"net.core.netdev_max_backlog": fs.ErrNotExist,   // the initial namespace's alone
	} {
		host, err := sock.Sysctl(name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = readSysctls.Run(nil, lab.SandboxOptions{Sysctls: map[string]string{name: host}})
		if !errors.Is(err, want) {
			t.Errorf("writing the host-wide %s in the child: want %v, got %v", name, want, err)
		}
		if after, _ := sock.Sysctl(name); after != host {
			t.Errorf("the host's %s changed: %q before the child, %q after", name, host, after)
		}
	}
}

func TestSandboxSetupErrorsKeepTheErrno(t *testing.T) {
	requireSandbox(t)
	// The kernel's proc handler refuses a port range below ip_unprivileged_port_start (1024).
	_, err := readSysctls.Run(nil, lab.SandboxOptions{Sysctls: map[string]string{"net.ipv4.ip_local_port_range": "500 600"}})
	if !errors.Is(err, unix.EINVAL) {
		t.Errorf("want EINVAL from the write, got %v", err)
	}
}

func TestSandboxOptionsTakeNetSysctlsOnly(t *testing.T) {
	for _, name := range []string{"kernel.hostname", "fs.file-max", "net.ipv4/../../kernel/hostname", "net"} {
		_, err := readSysctls.Run(nil, lab.SandboxOptions{Sysctls: map[string]string{name: "1"}})
		if err == nil || !strings.Contains(err.Error(), "only net.*") {
			t.Errorf("sysctl %q: want a refusal before the child starts, got %v", name, err)
		}
	}
}

// loopbackSeen is one connection over lo in the child, as both ends see it.
type loopbackSeen struct {
	Client, Server sock.Tuple
}

type namespaceSeen struct {
	NetNS string // readlink /proc/self/ns/net
	Conns []loopbackSeen
}

var connectOverLo = lab.RegisterChild("test.loopback", func(struct{}) (namespaceSeen, error) {
	var seen namespaceSeen
	var err error
	if seen.NetNS, err = os.Readlink("/proc/self/ns/net"); err != nil {
		return seen, err
	}
	for _, addr := range []string{"127.0.0.1", "::1"} {
		c, err := connectOnce(netip.AddrPortFrom(netip.MustParseAddr(addr), 0))
		if err != nil {
			return seen, err
		}
		seen.Conns = append(seen.Conns, c)
	}
	return seen, nil
})

// connectOnce listens on at, connects to it, accepts, and reads both ends' tuples.
func connectOnce(at netip.AddrPort) (loopbackSeen, error) {
	var seen loopbackSeen
	l, addr, err := lab.ListenOn(at, 8)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	c, err := lab.DialTo(addr)
	if err != nil {
		return seen, err
	}
	defer unix.Close(c)
	s, err := acceptFD(lab.AcceptOn(l, 5*time.Second))
	if err != nil {
		return seen, err
	}
	defer unix.Close(s)
	if seen.Client, err = sock.TupleOf(c); err != nil {
		return seen, err
	}
	seen.Server, err = sock.TupleOf(s)
	return seen, err
}

// The children run outside Ginkgo, so lab's Listen and Dial, which report through Expect
// and close through DeferCleanup, are not theirs to use: these return errors instead.

func TestSandboxLoopbackWorksOverIPv4AndIPv6(t *testing.T) {
	kind := requireSandbox(t)
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	seen, err := connectOverLo.Run(struct{}{}, lab.SandboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if seen.NetNS == host {
		t.Fatalf("the child is in the host's network namespace %s", host)
	}
	if len(seen.Conns) != 2 {
		t.Fatalf("want a connection over 127.0.0.1 and one over ::1, got %+v", seen.Conns)
	}
	for i, want := range []string{"127.0.0.1", "::1"} {
		c := seen.Conns[i]
		if c.Client.Remote.Addr().String() != want || c.Client.Local.Addr().String() != want {
			t.Errorf("connection %d: client %s, want both ends on %s", i, c.Client, want)
		}
		if c.Server != c.Client.Mirror() {
			t.Errorf("connection %d: server sees %s, the mirror of the client's %s", i, c.Server, c.Client)
		}
	}
	t.Logf("%s child %s (host %s): %s; %s", kind, seen.NetNS, host, seen.Conns[0].Client, seen.Conns[1].Client)
}

var failWithErrno = lab.RegisterChild("test.errno", func(struct{}) (struct{}, error) {
	return struct{}{}, fmt.Errorf("the proof's words: %w", os.NewSyscallError("connect", unix.EADDRNOTAVAIL))
})

var panics = lab.RegisterChild("test.panic", func(struct{}) (struct{}, error) { panic("the child's panic") })

func TestSandboxChildErrorsComeBack(t *testing.T) {
	requireSandbox(t)
	_, err := failWithErrno.Run(struct{}{}, lab.SandboxOptions{})
	var ce *lab.ChildError
	if !errors.As(err, &ce) || !errors.Is(err, unix.EADDRNOTAVAIL) || !strings.Contains(err.Error(), "the proof's words") {
		t.Errorf("want a *ChildError that wraps EADDRNOTAVAIL and keeps the message, got %#v", err)
	}
	if sock.ErrnoName(err) != "EADDRNOTAVAIL" {
		t.Errorf("ErrnoName = %q", sock.ErrnoName(err))
	}
	_, err = panics.Run(struct{}{}, lab.SandboxOptions{})
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "panic: the child's panic") {
		t.Errorf("want the child's panic as a *ChildError, got %v", err)
	}
	if err := lab.InSandbox("test.no-such-child", nil, lab.SandboxOptions{}, nil); err == nil {
		t.Error("an unregistered name ran")
	}
}

var sleeps = lab.RegisterChild("test.sleep", func(d time.Duration) (struct{}, error) {
	time.Sleep(d)
	return struct{}{}, nil
})

func TestSandboxTimeoutKillsTheChild(t *testing.T) {
	requireSandbox(t)
	start := time.Now()
	_, err := sleeps.Run(time.Minute, lab.SandboxOptions{Timeout: 500 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "no result within") {
		t.Errorf("want a timeout, got %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the timeout of 500ms took %v", took)
	}
}

// acceptFD drops the peer address that AcceptWithin also returns.
func acceptFD(fd int, _ netip.AddrPort, err error) (int, error) { return fd, err }

// readUserNS reads the child's uid_map: the initial user namespace maps every uid to itself,
// "0 0 4294967295"; a user namespace of the sandbox maps one.
var readUserNS = lab.RegisterChild("test.userns", func(struct{}) (string, error) {
	b, err := os.ReadFile("/proc/self/uid_map")
	return strings.Join(strings.Fields(string(b)), " "), err
})

func TestSandboxUserNSGivesAUserNamespace(t *testing.T) {
	requireSandbox(t)
	uidMap, err := readUserNS.Run(struct{}{}, lab.SandboxOptions{UserNS: true})
	if errors.Is(err, lab.ErrNoSandbox) && !lab.InCI() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if uidMap == "0 0 4294967295" {
		t.Errorf("with UserNS the child is in the initial user namespace (uid_map %q)", uidMap)
	}
}
