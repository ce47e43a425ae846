//go:build linux

package specs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver"
	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// The sandbox children of chapter 4, and what they bring back. Each runs in a network
// namespace of its own (lab.RegisterChild): there net.core.somaxconn and
// net.ipv4.tcp_abort_on_overflow are set without touching the host's, the TcpExt counters
// move for the proof's own packets alone, and lo carries nothing else for the capture.
// A child has no Ginkgo to fail into: it returns what the kernel said, and the spec asserts.

// ch4ListenCounters are the TcpExt counters a listener moves when it drops a SYN.
var ch4ListenCounters = []string{"ListenOverflows", "ListenDrops"}

// ch4Counters keeps ch4ListenCounters of two TcpExt readings, and how far each rose.
func ch4Counters(before, after lab.Counters) evidence.CountersSeen {
	b, a := lab.Counters{}, lab.Counters{}
	for _, name := range ch4ListenCounters {
		b[name], a[name] = before[name], after[name]
	}
	return evidence.CountersSeen{Before: b, After: a, Delta: a.Sub(b)}
}

// ch4Article is the article's figure for the queue's size.
const ch4Article = "about 5-10"

// ch4SizeArg asks the child for a listener on Loopback with listen(fd, Backlog).
type ch4SizeArg struct {
	Loopback string `json:"loopback"`
	Backlog  int    `json:"backlog"`
}

// --8<-- [start:backlog-size-child]

// ch4CapChild listens with arg.Backlog and reads back the limit the kernel applied. Its
// sandbox sets no sysctl: a new network namespace starts with the kernel's own default
// net.core.somaxconn (preinit_net_sysctl in net/core/net_namespace.c sets SOMAXCONN), which
// no setting of the host's reaches.
var ch4CapChild = lab.RegisterChild("ch4.backlog.cap", ch4Cap)

func ch4Cap(arg ch4SizeArg) (evidence.BacklogCap, error) {
	seen, l, _, err := ch4Capped("new namespace", arg)
	if err == nil {
		unix.Close(l)
	}
	return seen, err
}

// ch4Capped reads the namespace's net.core.somaxconn, listens on arg.Loopback with
// listen(fd, arg.Backlog), and reads back the limit the kernel applied (tcpi_sacked);
// where names the namespace. The listener is the caller's to close.
func ch4Capped(where string, arg ch4SizeArg) (evidence.BacklogCap, int, netip.AddrPort, error) {
	seen := evidence.BacklogCap{Where: where, Backlog: arg.Backlog, Article: ch4Article}
	var err error
	if seen.Somaxconn, err = lab.ReadSysctlInt("net.core.somaxconn"); err != nil {
		return seen, -1, netip.AddrPort{}, err
	}
	at := netip.AddrPortFrom(netip.MustParseAddr(arg.Loopback), 0)
	l, addr, err := lab.ListenOn(at, arg.Backlog)
	if err != nil {
		return seen, -1, addr, err
	}
	q, err := sock.AcceptQueueOf(l)
	if err != nil {
		unix.Close(l)
		return seen, -1, addr, err
	}
	seen.Max = q.Max
	return seen, l, addr, nil
}

// ch4SizeChild listens with a backlog above the sandbox's net.core.somaxconn, then connects
// clients one at a time, each once the last is queued, as many as the kernel's maximum plus
// one; then one more, whose SYN the listener drops: the TcpExt counters show the drop as it
// happens, with no timer to wait for.
var ch4SizeChild = lab.RegisterChild("ch4.backlog.size", ch4Size)

func ch4Size(arg ch4SizeArg) (evidence.BacklogCap, error) {
	seen, l, addr, err := ch4Capped("sandbox", arg)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	fill := &evidence.Fill{Listener: addr.String(), Backlog: arg.Backlog, Max: seen.Max}
	seen.Fill = fill

	var q sock.AcceptQueue
	for range seen.Max + 1 {
		c, err := lab.DialTo(addr)
		if err != nil {
			return seen, err
		}
		defer unix.Close(c)
		s, err := ch4StateOf(c)
		if err != nil {
			return seen, err
		}
		fill.Completed = append(fill.Completed, s)
		if q, err = ch4AwaitQueue(l, uint32(len(fill.Completed)), lab.AcceptWithin); err != nil {
			return seen, err
		}
	}
	fill.Queued = q.Len

	before, err := lab.TCPExt()
	if err != nil {
		return seen, err
	}
	next, err := sock.Socket(sock.Family(addr))
	if err != nil {
		return seen, err
	}
	defer unix.Close(next)
	pending := ch4ConnectInBackground(next, addr, lab.ConnectWithin)
	// The SYN finds sk_acceptq_is_full true and tcp_conn_request drops it, counting
	// ListenOverflows and ListenDrops: the counters tell the proof it happened, at once.
	after, err := ch4AwaitCounterRise(before, "ListenOverflows", lab.ConnectWithin)
	if err != nil {
		return seen, err
	}
	counters := ch4Counters(before, after)
	seen.Counters = &counters
	st, err := ch4StateOf(next)
	if err != nil {
		return seen, err
	}
	fill.Next.Client, fill.Next.State = st.Client, st.State
	if q, err = sock.AcceptQueueOf(l); err != nil {
		return seen, err
	}
	fill.Next.Queued = q.Len
	// shutdown(2) on a socket in SYN_SENT abandons the attempt (tcp_disconnect: no RST, the
	// socket goes to CLOSE) and wakes the poll inside Connect, which returns.
	if err := unix.Shutdown(next, unix.SHUT_RDWR); err != nil {
		return seen, os.NewSyscallError("shutdown", err)
	}
	pending.wait()
	return seen, nil
}

// --8<-- [end:backlog-size-child]

// --8<-- [start:backlog-refserver-child]

// ch4RefserverChild starts refserver with its default backlog (Config.Backlog 0) where
// net.core.somaxconn is far above any backlog it could ask for: nothing caps its listen(), and
// the limit its listener reads back is what it asked.
var ch4RefserverChild = lab.RegisterChild("ch4.backlog.refserver", ch4Refserver)

func ch4Refserver(loopback string) (evidence.BacklogCap, error) {
	seen := evidence.BacklogCap{Where: "refserver", Article: ch4Article}
	var err error
	if seen.Somaxconn, err = lab.ReadSysctlInt("net.core.somaxconn"); err != nil {
		return seen, err
	}
	at := netip.AddrPortFrom(netip.MustParseAddr(loopback), 0)
	srv, err := refserver.New(refserver.Config{Addr: at, Loops: 1})
	if err != nil {
		return seen, err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // nothing was accepted: the loop drains at once
	}()
	q, err := sock.AcceptQueueOf(srv.Listeners()[0])
	seen.Max = q.Max
	return seen, err
}

// --8<-- [end:backlog-refserver-child]

// ch4FullSeen is what the backlog.full child saw: the story, the counters and the segments
// captured before the server's accept() and after it.
type ch4FullSeen struct {
	Overflow     evidence.Overflow     `json:"overflow"`
	Counters     evidence.CountersSeen `json:"counters"`
	BeforeAccept []evidence.Segment    `json:"before_accept"`
	AfterAccept  []evidence.Segment    `json:"after_accept"`
}

// ch4SynCount bounds the connect in case the server never accepted: TCP_SYNCNT 2 has the
// kernel give up (ETIMEDOUT) once the time two doubling retransmissions take has passed,
// 1 + 2 + 4 s (retransmits_timed_out, tcp_model_timeout), instead of the two minutes of
// tcp_syn_retries. Connect's own deadline, lab.ConnectWithin, comes first.
const ch4SynCount = 2

// --8<-- [start:backlog-full-child]

// ch4FullChild fills a listen(fd, 0) queue with one connection, captures what a second
// client's connect() puts on lo while the queue is full, accepts the first, and waits for
// the second to complete.
var ch4FullChild = lab.RegisterChild("ch4.backlog.full", ch4Full)

func ch4Full(loopback string) (ch4FullSeen, error) {
	var seen ch4FullSeen
	o := &seen.Overflow
	var err error
	if o.AbortOnOverflow, err = sock.Sysctl("net.ipv4.tcp_abort_on_overflow"); err != nil {
		return seen, err
	}
	at := netip.AddrPortFrom(netip.MustParseAddr(loopback), 0)
	l, addr, capture, err := lab.ListenCaptured(at, 0)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	defer capture.Close()
	o.Listener = addr.String()

	filler, err := lab.DialTo(addr)
	if err != nil {
		return seen, err
	}
	defer unix.Close(filler)
	if o.Filler, err = ch4LocalAddr(filler); err != nil {
		return seen, err
	}
	q, err := ch4AwaitQueue(l, 1, lab.AcceptWithin)
	if err != nil {
		return seen, err
	}
	o.QueueLen, o.QueueMax = q.Len, q.Max

	before, err := lab.TCPExt()
	if err != nil {
		return seen, err
	}
	client, err := sock.Socket(sock.Family(addr))
	if err != nil {
		return seen, err
	}
	defer unix.Close(client)
	err = unix.SetsockoptInt(client, unix.IPPROTO_TCP, unix.TCP_SYNCNT, ch4SynCount)
	if err != nil {
		return seen, os.NewSyscallError("setsockopt TCP_SYNCNT", err)
	}
	pending := ch4ConnectInBackground(client, addr, lab.ConnectWithin)
	// tcp_conn_request finds the queue full and drops the SYN: no SYN-ACK, and no RST
	// either, whatever tcp_abort_on_overflow says (that knob is read only when a final ACK
	// finds the queue full, in tcp_check_req). ListenOverflows and ListenDrops count it.
	after, err := ch4AwaitCounterRise(before, "ListenOverflows", lab.ConnectWithin)
	if err != nil {
		return seen, err
	}
	seen.Counters = ch4Counters(before, after)
	ti, err := unix.GetsockoptTCPInfo(client, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return seen, os.NewSyscallError("getsockopt TCP_INFO", err)
	}
	o.RTOUS = ti.Rto
	if o.StateFull, err = sock.TCPState(client); err != nil {
		return seen, err
	}
	if o.Client, err = ch4LocalAddr(client); err != nil {
		return seen, err
	}
	// lo's taps saw the SYN before TCP dropped it: the filler's three segments and the
	// client's SYN are in the capture now, and nothing answered that SYN.
	if seen.BeforeAccept, err = capture.Read(4, lab.ReadWithin); err != nil {
		return seen, err
	}

	// The server takes the filler: the queue has room again, yet nothing tells the client.
	accepted, peer, err := lab.AcceptOn(l, lab.AcceptWithin)
	if err != nil {
		return seen, err
	}
	defer unix.Close(accepted)
	o.AcceptAtUS = time.Since(pending.start).Microseconds()
	o.AcceptedFirst = peer.String()
	if o.StateAccepted, err = sock.TCPState(client); err != nil {
		return seen, err
	}

	// Only the retransmission timer sends the SYN again (tcp_retransmit_timer, after
	// tcpi_rto), and this time tcp_conn_request finds room.
	pending.wait()
	o.EstablishedUS = pending.took.Microseconds()
	if pending.err != nil {
		o.ConnectErr = pending.err.Error()
	}
	if ti, err = unix.GetsockoptTCPInfo(client, unix.IPPROTO_TCP, unix.TCP_INFO); err != nil {
		return seen, os.NewSyscallError("getsockopt TCP_INFO", err)
	}
	o.Retransmits = ti.Total_retrans
	if o.StateAfter, err = sock.TCPState(client); err != nil {
		return seen, err
	}
	second, peer, err := lab.AcceptOn(l, lab.AcceptWithin)
	if err != nil {
		return seen, err
	}
	defer unix.Close(second)
	o.AcceptedSecond = peer.String()

	// The client's handshake is done and accepted: its segments have passed lo's taps.
	// Three are expected (the SYN again, SYN-ACK, ACK); whatever else was captured is
	// taken too, at no wait, so that an RST could not hide.
	seen.AfterAccept, err = capture.ReadAll(3)
	return seen, err
}

// --8<-- [end:backlog-full-child]

// ch4Pending is a sock.Connect running in a goroutine of its own, so that the proof can
// watch the socket and the listener while the handshake is, or is not, under way.
type ch4Pending struct {
	start time.Time
	done  chan struct{}
	err   error
	took  time.Duration // from just before connect(2) to Connect's return
}

func ch4ConnectInBackground(fd int, to netip.AddrPort, within time.Duration) *ch4Pending {
	p := &ch4Pending{start: time.Now(), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = sock.Connect(fd, to, within)
		p.took = time.Since(p.start)
	}()
	return p
}

// wait returns once Connect has; Connect's own deadline bounds it.
func (p *ch4Pending) wait() { <-p.done }

// ch4AwaitQueue reads the listener's accept queue (TCP_INFO) until it holds want
// connections, at most within, and returns the last reading: the caller judges it. A
// client's connect() returns once it has sent the final ACK; the listener queues the
// connection when that ACK has crossed lo, a moment later (tcp_check_req).
func ch4AwaitQueue(l int, want uint32, within time.Duration) (sock.AcceptQueue, error) {
	deadline := time.Now().Add(within)
	for attempt := 0; ; attempt++ {
		q, err := sock.AcceptQueueOf(l)
		if err != nil || q.Len >= want || attempt >= 10000 || time.Now().After(deadline) {
			return q, err
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// ch4AwaitCounterRise reads TcpExt until name has risen above its value in before, at most
// within, and returns the last reading.
func ch4AwaitCounterRise(before lab.Counters, name string, within time.Duration) (lab.Counters, error) {
	deadline := time.Now().Add(within)
	for attempt := 0; ; attempt++ {
		c, err := lab.TCPExt()
		if err != nil {
			return c, err
		}
		if c[name] > before[name] {
			return c, nil
		}
		if attempt >= 10000 || time.Now().After(deadline) {
			return c, fmt.Errorf("TcpExt %s stayed at %d for %v", name, c[name], within)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// ch4StateOf is a client socket's address and TCP state.
func ch4StateOf(fd int) (evidence.ClientState, error) {
	addr, err := ch4LocalAddr(fd)
	if err != nil {
		return evidence.ClientState{}, err
	}
	state, err := sock.TCPState(fd)
	return evidence.ClientState{Client: addr, State: state}, err
}

func ch4LocalAddr(fd int) (string, error) {
	ap, err := sock.LocalAddr(fd)
	if err != nil {
		return "", err
	}
	if !ap.IsValid() {
		return "", errors.New("getsockname: no address")
	}
	return ap.String(), nil
}
