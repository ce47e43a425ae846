//go:build linux

package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/testkit"
)

const envTestChild = "PORTPROOF_NETNS_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envTestChild) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// child is the re-executed test binary: it sets its namespace up, then prints the
// namespace's name, the port range it reads and a connection over lo, or why not.
func child() int {
	if err := Setup(map[string]string{"net.ipv4.ip_local_port_range": "40000 40009"}); err != nil {
		fmt.Println("setup:", err)
		return 1
	}
	ns, _ := os.Readlink("/proc/self/ns/net")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	fmt.Println(ns, Sysctl("net.ipv4.ip_local_port_range"), c.LocalAddr())
	return 0
}

// TestReexecInANamespace: the first kind this machine allows (netns as root, userns+netns
// for an unprivileged user) runs the binary again in a namespace of its own, where a sysctl
// written is read back, lo is up, and the host's setting is untouched.
func TestReexecInANamespace(t *testing.T) {
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	hostRange := Sysctl("net.ipv4.ip_local_port_range")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kind, err := First(func(k Kind) error {
		out.Reset()
		cmd := k.Command(ctx, "-test.run=^$")
		cmd.Env = append(os.Environ(), envTestChild+"=1")
		cmd.Stdout, cmd.Stderr = &out, &out
		return cmd.Run()
	})
	if errors.Is(err, ErrRefused) {
		if testkit.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("%s: %v: %s", kind.Name, err, out.String())
	}
	f := strings.Fields(out.String())
	if len(f) != 4 {
		t.Fatalf("%s: the child said %q", kind.Name, out.String())
	}
	if f[0] == host {
		t.Errorf("%s: the child is in the host's namespace %s", kind.Name, host)
	}
	if got := f[1] + " " + f[2]; got != "40000 40009" {
		t.Errorf("%s: the child read the port range %q", kind.Name, got)
	}
	if !strings.HasPrefix(f[3], "127.0.0.1:4000") {
		t.Errorf("%s: the child connected from %s, outside its range", kind.Name, f[3])
	}
	if after := Sysctl("net.ipv4.ip_local_port_range"); after != hostRange {
		t.Errorf("the host's port range went from %q to %q", hostRange, after)
	}
	t.Logf("%s: %s", kind.Name, out.String())
}

func TestFirst(t *testing.T) {
	var tried []string
	_, err := First(func(k Kind) error {
		tried = append(tried, k.Name)
		return fmt.Errorf("fork/exec: %w", unix.EPERM)
	})
	var refused *RefusedError
	if !errors.As(err, &refused) || !errors.Is(err, ErrRefused) || len(refused.Refusals) != len(Kinds) {
		t.Errorf("every kind refused: got %v", err)
	}
	if want := "netns: EPERM"; len(refused.Refusals) == 0 || refused.Refusals[0] != want {
		t.Errorf("refusals %q, want %q first", refused.Refusals, want)
	}
	tried = nil
	k, err := First(func(k Kind) error {
		tried = append(tried, k.Name)
		if k.Name == "netns" {
			return os.NewSyscallError("clone", unix.ENOSPC)
		}
		return os.NewSyscallError("connect", unix.ECONNREFUSED)
	})
	if k.Name != "userns+netns" || !errors.Is(err, unix.ECONNREFUSED) || len(tried) != 2 {
		t.Errorf("a failure that is not a refusal ends the search: got %s, %v after %v", k.Name, err, tried)
	}
}
