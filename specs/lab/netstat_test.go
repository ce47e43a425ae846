//go:build linux

package lab_test

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/lab"
)

// countersSeen is a fresh namespace's counters, before and after one connection that
// queued and one SYN that found the accept queue full.
type countersSeen struct {
	TCPExtBefore, TCPExtAfter lab.Counters
	TCPBefore, TCPAfter       lab.Counters
}

var countConnections = lab.RegisterChild("test.counters", func(struct{}) (countersSeen, error) {
	var seen countersSeen
	var err error
	if seen.TCPExtBefore, err = lab.TCPExt(); err != nil {
		return seen, err
	}
	if seen.TCPBefore, err = lab.TCPSNMP(); err != nil {
		return seen, err
	}
	// listen(fd, 0) still queues one connection: the queue counts as full only when it
	// holds more than the backlog (sk_acceptq_is_full).
	l, addr, err := lab.ListenOn(netip.MustParseAddrPort("127.0.0.1:0"), 0)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	queued, err := lab.DialTo(addr)
	if err != nil {
		return seen, err
	}
	defer unix.Close(queued)
	// The second SYN is dropped by the listener (tcp_conn_request: ListenOverflows, then
	// ListenDrops), without an answer: the client stays in SYN_SENT.
	dropped, err := sock.Socket(unix.AF_INET)
	if err != nil {
		return seen, err
	}
	defer unix.Close(dropped)
	sa, _ := sock.Sockaddr(addr)
	if err := unix.Connect(dropped, sa); !errors.Is(err, unix.EINPROGRESS) {
		return seen, os.NewSyscallError("connect", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for attempt := 0; attempt < 200 && time.Now().Before(deadline); attempt++ {
		if seen.TCPExtAfter, err = lab.TCPExt(); err != nil || seen.TCPExtAfter["ListenOverflows"] > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return seen, err
	}
	seen.TCPAfter, err = lab.TCPSNMP()
	return seen, err
})

func TestCountersAreTheNamespacesOwn(t *testing.T) {
	requireSandbox(t)
	seen, err := countConnections.Run(struct{}{}, lab.SandboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ListenOverflows", "ListenDrops"} {
		if v, ok := seen.TCPExtBefore[name]; !ok || v != 0 {
			t.Errorf("TcpExt %s in a fresh namespace: %d (present: %v), want 0", name, v, ok)
		}
		if d := seen.TCPExtAfter.Sub(seen.TCPExtBefore)[name]; d < 1 {
			t.Errorf("TcpExt %s rose by %d after a SYN to a full accept queue", name, d)
		}
	}
	d := seen.TCPAfter.Sub(seen.TCPBefore)
	if d["ActiveOpens"] != 2 || d["PassiveOpens"] != 1 {
		t.Errorf("Tcp ActiveOpens +%d, PassiveOpens +%d: want +2 (two connect calls) and +1 (one queued connection)", d["ActiveOpens"], d["PassiveOpens"])
	}
	t.Logf("TcpExt ListenOverflows %d, ListenDrops %d; Tcp ActiveOpens %d, PassiveOpens %d, CurrEstab %d",
		seen.TCPExtAfter["ListenOverflows"], seen.TCPExtAfter["ListenDrops"],
		seen.TCPAfter["ActiveOpens"], seen.TCPAfter["PassiveOpens"], seen.TCPAfter["CurrEstab"])
}

func TestCountersReadableOnTheHost(t *testing.T) {
	ext, err := lab.TCPExt()
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := lab.TCPSNMP()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ext["ListenOverflows"]; !ok {
		t.Errorf("no ListenOverflows in TcpExt: %v", ext)
	}
	// RFC 2012's tcpMaxConn: -1, the number of connections is not limited.
	if tcp["MaxConn"] != -1 {
		t.Errorf("Tcp MaxConn = %d, want -1", tcp["MaxConn"])
	}
}
