//go:build linux

package lab_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/specs/evidence"
	"portproof/specs/lab"
)

func TestResultOf(t *testing.T) {
	for _, tc := range []struct {
		n    int
		err  error
		want string
	}{
		{-1, nil, "0"}, {0, nil, "EOF"}, {5, nil, "5 bytes"}, {-1, unix.ECONNRESET, "ECONNRESET"},
	} {
		if got := lab.ResultOf(tc.n, tc.err); got != tc.want {
			t.Errorf("ResultOf(%d, %v) = %q, want %q", tc.n, tc.err, got, tc.want)
		}
	}
	var cs evidence.Calls
	cs.Add("client", "close", time.Now(), "0")
	if len(cs) != 1 || cs[0].Who != "client" {
		t.Errorf("evidence.Calls.Add: %+v", cs)
	}
}

// TestTableStateOf: a connection of this process is in the kernel's table with its state
// at both ends, the same state TCP_INFO reports; a connection that never was is not.
func TestTableStateOf(t *testing.T) {
	l, addr, err := lab.ListenOn(netip.MustParseAddrPort("127.0.0.1:0"), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(l)
	c, err := lab.DialTo(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(c)
	a, _, err := lab.AcceptOn(l, lab.AcceptWithin)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(a)
	local, err := unix.Getsockname(c)
	if err != nil {
		t.Fatal(err)
	}
	client := netip.AddrPortFrom(netip.AddrFrom4(local.(*unix.SockaddrInet4).Addr), uint16(local.(*unix.SockaddrInet4).Port))

	for _, end := range []struct {
		who           string
		local, remote netip.AddrPort
		fd            int
	}{{"client", client, addr, c}, {"server", addr, client, a}} {
		s, err := lab.TableStateOf(end.who, end.local, end.remote)
		if err != nil {
			t.Fatal(err)
		}
		ti, err := lab.StateOf(end.who, end.fd)
		if err != nil {
			t.Fatal(err)
		}
		if s.State != "ESTABLISHED" || ti.State != s.State || s.From != "/proc/net/tcp" || ti.From != "TCP_INFO" {
			t.Errorf("%s: table %+v, TCP_INFO %+v", end.who, s, ti)
		}
	}
	if _, err := lab.TableStateOf("nobody", client, netip.MustParseAddrPort("127.0.0.1:1")); !errors.Is(err, lab.ErrNoRow) {
		t.Errorf("a connection that never was: %v, want ErrNoRow", err)
	}
	got, err := lab.AwaitState(func() (evidence.StateSeen, error) { return lab.StateOf("client", c) }, "ESTABLISHED", time.Second)
	if err != nil || got.State != "ESTABLISHED" {
		t.Errorf("AwaitState: %+v, %v", got, err)
	}
}
