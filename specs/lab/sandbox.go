//go:build linux

package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/netns"
	"portproof/internal/testkit"
)

// The sandbox runs a proof in a child process of its own, in a network namespace of its own
// (internal/netns says why a whole process): the test binary re-executes itself, TestMain
// calls RunChildIfAsked, and the child runs one registered function and hands its result
// back as JSON on a pipe of its own.

// SandboxOptions is how the child's world differs from the host's.
type SandboxOptions struct {
	// Sysctls are written in the child's own network namespace before the function runs,
	// and read back: {"net.ipv4.ip_local_port_range": "40000 40009"}. Only net.* names are
	// taken: the network namespace isolates those alone.
	Sysctls map[string]string
	// NoFile, when not 0, is the RLIMIT_NOFILE soft limit the function runs under. Lowering
	// it needs no privilege; the hard limit stays.
	NoFile uint64
	// Timeout bounds the child from start to exit; 0 means DefaultSandboxTimeout. At the
	// deadline the child is killed (SIGKILL), and its namespace goes with it.
	Timeout time.Duration
	// UserNS, when true, puts the child in a user namespace of its own too ("userns+netns"),
	// even where a network namespace alone was allowed: for a proof of what the root of a
	// user namespace may not do. An error wraps ErrNoSandbox where user namespaces are not
	// allowed.
	UserNS bool
}

// DefaultSandboxTimeout leaves room for a dropped SYN's retransmissions on a loaded machine
// running under -race. The initial RTO is 1 s (TCP_TIMEOUT_INIT, include/net/tcp.h). Since
// Linux 6.5, tcp_retransmit_timer (net/ipv4/tcp_timer.c) doubles a SYN_SENT socket's RTO only
// once it has timed out more than net.ipv4.tcp_syn_linear_timeouts times (4 by default, and
// in every new namespace: tcp_sk_init), so a SYN nobody answers is resent after five 1 s
// intervals, then 2 s, 4 s... (Documentation/networking/ip-sysctl.rst: "1, 1, 1, 1, 1, 2, 4").
const DefaultSandboxTimeout = 30 * time.Second

// ErrNoSandbox is what InSandbox returns, wrapped with the reason, when this process can
// create no private network namespace: neither clone(CLONE_NEWNET), which needs
// CAP_SYS_ADMIN, nor an unprivileged user namespace with one inside was allowed.
var ErrNoSandbox = errors.New("no private network namespace for the proof")

// ChildError is an error the child's function returned, or the child's setup met, brought
// back across the process boundary. When the child's error carried an errno, Unwrap returns
// it, so errors.Is(err, unix.EADDRNOTAVAIL) and sock.ErrnoName(err) work in the parent.
type ChildError struct {
	Child string     // the registered name
	Msg   string     // the child's err.Error()
	Errno unix.Errno // the errno the child's error wrapped; 0 when none
}

func (e *ChildError) Error() string { return fmt.Sprintf("sandbox child %q: %s", e.Child, e.Msg) }

func (e *ChildError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Child is a function that runs in the sandbox, registered by RegisterChild. A is its
// argument and R its result; both cross the process boundary as JSON.
type Child[A, R any] struct{ name string }

// RegisterChild registers fn under name, for InSandbox and Child.Run. evidence.Call it in a
// package-level var, so that the re-executed test binary has registered fn too by the time
// TestMain calls RunChildIfAsked:
//
//	var fillRange = lab.RegisterChild("limit.per-destination", func(n int) (Seen, error) { ... })
//
// fn runs in a process of its own, outside Ginkgo and testing: it reports through its
// result and error, never through Expect or t.
func RegisterChild[A, R any](name string, fn func(arg A) (R, error)) Child[A, R] {
	if hookCalled.Load() {
		panic(fmt.Sprintf("lab.RegisterChild(%q) after RunChildIfAsked: register children in package-level vars, so that the re-executed child has them too", name))
	}
	childRegistry.Lock()
	defer childRegistry.Unlock()
	if _, dup := childRegistry.fns[name]; dup {
		panic(fmt.Sprintf("lab.RegisterChild: %q registered twice", name))
	}
	childRegistry.fns[name] = func(raw json.RawMessage) (any, error) {
		var arg A
		if err := json.Unmarshal(raw, &arg); err != nil {
			return nil, fmt.Errorf("decoding the argument as %T: %w", arg, err)
		}
		return fn(arg)
	}
	return Child[A, R]{name: name}
}

// Run is InSandbox for this child, typed.
func (c Child[A, R]) Run(arg A, opts SandboxOptions) (R, error) {
	var r R
	err := InSandbox(c.name, arg, opts, &r)
	return r, err
}

// InSandbox runs the child registered as name in a new process in a new network namespace,
// with arg as its argument (JSON), and decodes its result into out (a pointer, or nil). In
// the child, before the function runs: lo is up with 127.0.0.1 and ::1, opts.Sysctls are
// written, and RLIMIT_NOFILE is opts.NoFile. The function's error comes back as a
// *ChildError; an error that wraps ErrNoSandbox means this machine allows no namespace.
func InSandbox(name string, arg any, opts SandboxOptions, out any) error {
	if !hookCalled.Load() {
		return errors.New("lab.InSandbox: TestMain must call lab.RunChildIfAsked() first: the re-executed child starts there")
	}
	kind, err := chosenKind()
	if err == nil && opts.UserNS {
		kind, err = userNSKind()
	}
	if err != nil {
		return err
	}
	return runChild(kind, name, arg, opts, out)
}

// SandboxKind says which namespaces InSandbox creates here: "netns" (root: a network
// namespace alone) or "userns+netns" (unprivileged: a user namespace that owns one). The
// first call starts a probe child to find out; an error wraps ErrNoSandbox.
func SandboxKind() (string, error) {
	kind, err := chosenKind()
	if err != nil {
		return "", err
	}
	return kind.Name, nil
}

// The child's end of the protocol: an environment variable tells the re-executed binary it
// is a child, the request comes on stdin, and the response goes to fd 3, so that nothing the
// test binary or the function prints can corrupt it.
const (
	childEnv   = "PORTPROOF_SANDBOX_CHILD"
	resultFD   = 3
	maxMessage = 64 << 20
)

type childRequest struct {
	Name      string            `json:"name"`
	Arg       json.RawMessage   `json:"arg"`
	Sysctls   map[string]string `json:"sysctls,omitempty"`
	NoFile    uint64            `json:"nofile,omitempty"`
	HostNetNS nsID              `json:"host_netns"`
}

type childResponse struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
	Errno  unix.Errno      `json:"errno,omitempty"`
}

var (
	hookCalled    atomic.Bool // RunChildIfAsked has run: registration is closed
	inChild       atomic.Bool // this process is a sandbox child
	childRegistry = struct {
		sync.Mutex
		fns map[string]func(json.RawMessage) (any, error)
	}{fns: map[string]func(json.RawMessage) (any, error){}}
)

var sandboxProbe = RegisterChild("lab.probe", func(struct{}) (struct{}, error) { return struct{}{}, nil })

// chosenKind finds, once per process, the first kind whose probe child starts, sets up its
// namespace and returns.
var chosenKind = sync.OnceValues(func() (netns.Kind, error) {
	kind, err := netns.First(func(k netns.Kind) error {
		return runChild(k, sandboxProbe.name, struct{}{}, SandboxOptions{Timeout: 10 * time.Second}, nil)
	})
	var refused *netns.RefusedError
	switch {
	case errors.As(err, &refused):
		return kind, fmt.Errorf("%w (%s): run as root (sudo -E go test ./specs/...), or allow unprivileged user namespaces (user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0)",
			ErrNoSandbox, strings.Join(refused.Refusals, "; "))
	case err != nil:
		return kind, fmt.Errorf("sandbox probe (%s): %w", kind.Name, err)
	}
	return kind, nil
})

// userNSKind is "userns+netns" where its probe child starts, for SandboxOptions.UserNS.
var userNSKind = sync.OnceValues(func() (netns.Kind, error) {
	k := netns.Kinds[slices.IndexFunc(netns.Kinds, func(k netns.Kind) bool { return k.Name == "userns+netns" })]
	err := runChild(k, sandboxProbe.name, struct{}{}, SandboxOptions{Timeout: 10 * time.Second}, nil)
	if err == nil {
		return k, nil
	}
	if errno, refused := netns.Refused(err); refused {
		return k, fmt.Errorf("%w: no user namespace (%s: %s)", ErrNoSandbox, k.Name, unix.ErrnoName(errno))
	}
	return k, fmt.Errorf("sandbox probe (%s): %w", k.Name, err)
})

// netSysctlName is what SandboxOptions.Sysctls may name: net.* only, as dots, so that nothing
// reaches outside /proc/sys/net.
var netSysctlName = regexp.MustCompile(`^net(\.[A-Za-z0-9_-]+)+$`)

func runChild(kind netns.Kind, name string, arg any, opts SandboxOptions, out any) error {
	childRegistry.Lock()
	_, known := childRegistry.fns[name]
	childRegistry.Unlock()
	if !known {
		return fmt.Errorf("lab.InSandbox: no child registered as %q", name)
	}
	rawArg, err := json.Marshal(arg)
	if err != nil {
		return fmt.Errorf("lab.InSandbox(%q): encoding the argument: %w", name, err)
	}
	req := childRequest{Name: name, Arg: rawArg, NoFile: opts.NoFile, Sysctls: opts.Sysctls}
	for _, n := range slices.Sorted(maps.Keys(opts.Sysctls)) {
		if !netSysctlName.MatchString(n) {
			return fmt.Errorf("lab.InSandbox(%q): sysctl %q: only net.* settings belong to a network namespace", name, n)
		}
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultSandboxTimeout
	}

	// The thread stays locked to this goroutine until the child is gone, for Pdeathsig (see
	// netns.Kind.Command); it also pins the namespace read below to the thread that forks.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if req.HostNetNS, err = netnsOf("/proc/thread-self/ns/net"); err != nil {
		return err
	}
	reqJSON, err := json.Marshal(req)
	if err != nil {
		return err
	}
	results, resultsW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer results.Close()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := kind.Command(ctx, "-test.run=^$")
	// No -race sleep at the child's exit: its results travel on their pipe, not in a report.
	cmd.Env = testkit.ChildEnv(childEnv + "=" + name)
	cmd.Stdin = bytes.NewReader(reqJSON)
	output := &outputTail{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = output, output
	cmd.ExtraFiles = []*os.File{resultsW}
	cmd.WaitDelay = time.Second
	err = cmd.Start()
	resultsW.Close()
	if err != nil {
		return fmt.Errorf("sandbox child %q (%s): %w", name, kind.Name, err)
	}

	type read struct {
		b   []byte
		err error
	}
	got := make(chan read, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(results, maxMessage))
		got <- read{b, err}
	}()
	waitErr := cmd.Wait()
	// The child is gone; a descendant it left behind could still hold the pipe open.
	results.SetReadDeadline(time.Now().Add(time.Second))
	r := <-got

	if ctx.Err() != nil {
		return fmt.Errorf("sandbox child %q: no result within %v, killed; its output: %q", name, timeout, output.String())
	}
	var resp childResponse
	if len(r.b) == 0 || json.Unmarshal(r.b, &resp) != nil {
		return fmt.Errorf("sandbox child %q exited (%v) without a result (%v); does TestMain call lab.RunChildIfAsked first? its output: %q",
			name, waitErr, r.err, output.String())
	}
	if resp.Error != "" {
		return &ChildError{Child: name, Msg: resp.Error, Errno: resp.Errno}
	}
	if waitErr != nil {
		// The child exits 0 after its result; a race report makes it 66 (GORACE exitcode).
		return fmt.Errorf("sandbox child %q: %v after its result; its output: %q", name, waitErr, output.String())
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Result, out); err != nil {
		return fmt.Errorf("sandbox child %q: decoding its result into %T: %w", name, out, err)
	}
	return nil
}

// nsID names a namespace as stat(2) of /proc/.../ns/* shows it: nsfs device and inode.
type nsID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func netnsOf(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return nsID{Dev: st.Dev, Ino: st.Ino}, nil
}

// outputTail keeps the last max bytes written to it: the child's stdout and stderr, shown
// when it fails.
type outputTail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *outputTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *outputTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
