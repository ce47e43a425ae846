//go:build linux

package specs

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/procfs"
	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// Chapter 8's sandbox children: each has lo, /proc/net/tcp and the TcpExt counters to
// itself, and its own tcp_abort_on_overflow and tcp_syncookies.

// ch8DeferSeconds is what the listeners ask of TCP_DEFER_ACCEPT: long enough that no
// SYN-ACK is resent while the proofs run (the first after 1 s, TCP_TIMEOUT_INIT).
const ch8DeferSeconds = 5

// ch8Counters are the TcpExt counters these proofs read, before and after.
var ch8Counters = []string{"TCPDeferAcceptDrop", "ListenOverflows", "ListenDrops", "EmbryonicRsts",
	"SyncookiesSent", "SyncookiesRecv", "SyncookiesFailed", "TCPReqQFullDoCookies", "TCPReqQFullDrop"}

// ch8Delta is what the counters did between two readings: only those that moved.
func ch8Delta(before, after lab.Counters) map[string]int64 {
	d := map[string]int64{}
	for _, name := range ch8Counters {
		if n := after[name] - before[name]; n != 0 {
			d[name] = n
		}
	}
	return d
}

// ch8Deferred is a listener with TCP_DEFER_ACCEPT, on the child's loopback address, and a
// capture of its port.
func ch8Deferred(loopback string, backlog int) (int, netip.AddrPort, int, *lab.Capture, error) {
	l, at, c, err := lab.ListenCaptured(netip.AddrPortFrom(netip.MustParseAddr(loopback), 0), backlog)
	if err != nil {
		return -1, at, 0, nil, err
	}
	// The kernel keeps the option as a count of SYN-ACK retransmissions (secs_to_retrans)
	// and gives back the seconds those take: what it will really wait.
	if err := unix.SetsockoptInt(l, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, ch8DeferSeconds); err != nil {
		c.Close()
		unix.Close(l)
		return -1, at, 0, nil, os.NewSyscallError("setsockopt TCP_DEFER_ACCEPT", err)
	}
	defer_, err := unix.GetsockoptInt(l, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT)
	if err != nil {
		c.Close()
		unix.Close(l)
		return -1, at, 0, nil, os.NewSyscallError("getsockopt TCP_DEFER_ACCEPT", err)
	}
	return l, at, defer_, c, nil
}

// ch8Look reads both sides' views of the connection from client to the listener l.
func ch8Look(moment string, client, l int, at netip.AddrPort) (evidence.QueueView, error) {
	v := evidence.QueueView{Moment: moment, At: time.Now()}
	ti, err := unix.GetsockoptTCPInfo(client, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return v, os.NewSyscallError("getsockopt TCP_INFO", err)
	}
	if v.Client, err = sock.TCPState(client); err != nil {
		return v, err
	}
	v.Unacked = ti.Unacked
	local, err := sock.LocalAddr(client)
	if err != nil {
		return v, err
	}
	if s, err := lab.TableStateOf("server", at, local); err == nil {
		v.Server = s.State
	} else if err != lab.ErrNoRow {
		return v, err
	}
	q, err := sock.AcceptQueueOf(l)
	v.Queue, v.QueueMax = q.Len, q.Max
	return v, err
}

// --8<-- [start:defer-child]

// ch8DeferChild connects a client to a listener with TCP_DEFER_ACCEPT, looks at both
// sides, then has the client send its first bytes and looks again.
var ch8DeferChild = lab.RegisterChild("ch8.queue.defer", ch8Defer)

func ch8Defer(loopback string) (evidence.QueueDefer, error) {
	var seen evidence.QueueDefer
	l, at, deferS, capture, err := ch8Deferred(loopback, 8)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	defer capture.Close()
	seen.Listener, seen.Defer = at.String(), deferS
	before, err := lab.TCPExt()
	if err != nil {
		return seen, err
	}
	at0 := time.Now()
	client, err := lab.DialTo(at)
	seen.Calls.Add("client", "connect", at0, lab.ResultOf(-1, err))
	if err != nil {
		return seen, err
	}
	defer unix.Close(client)
	local, _ := sock.LocalAddr(client)
	seen.Client = local.String()
	// The final ACK reaches tcp_check_req, which drops a bare ACK while the listener defers
	// (rskq_defer_accept): the request stays, acked, and TCPDeferAcceptDrop counts it.
	if _, err := ch4AwaitCounterRise(before, "TCPDeferAcceptDrop", lab.ReadWithin); err != nil {
		return seen, err
	}
	v, err := ch8Look("connect() returned", client, l, at)
	seen.Views = append(seen.Views, v)
	if err != nil {
		return seen, err
	}
	// Nothing to accept, and nothing to wake a server: accept4 says EAGAIN, poll says no.
	_, _, err = sock.Accept(l)
	seen.Accept = sock.ErrnoName(err)
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(l), Events: unix.POLLIN}}, 0)
	if err != nil {
		return seen, os.NewSyscallError("poll", err)
	}
	seen.Readable = n > 0

	// The client's first bytes complete the connection: the accept queue has it.
	var calls evidence.Calls
	if err := ch7Write(&calls, "client", client, []byte("GET")); err != nil {
		return seen, err
	}
	seen.Calls = append(seen.Calls, calls...)
	if _, err := ch4AwaitQueue(l, 1, lab.AcceptWithin); err != nil {
		return seen, err
	}
	v, err = ch8Look("the client's first bytes arrived", client, l, at)
	seen.Views = append(seen.Views, v)
	if err != nil {
		return seen, err
	}
	fd, peer, err := lab.AcceptOn(l, lab.AcceptWithin)
	if err != nil {
		return seen, err
	}
	defer unix.Close(fd)
	seen.Accepted = peer.String()
	got, err := ch7Read(&seen.Calls, "server", fd)
	if err != nil {
		return seen, err
	}
	seen.Read = string(got)
	after, err := lab.TCPExt()
	if err != nil {
		return seen, err
	}
	seen.Counters = ch8Delta(before, after)
	// SYN, SYN-ACK, ACK; the data and its ACK.
	seen.Packets, err = capture.ReadAll(5)
	return seen, err
}

// --8<-- [end:defer-child]

// --8<-- [start:overflow-child]

// ch8OverflowChild: a client connects to a listener with TCP_DEFER_ACCEPT and backlog
// ch8OverflowBacklog, and is ESTABLISHED with only a request on the server; fillers then
// connect and send, one at a time, until the accept queue is full; then the client sends.
var ch8OverflowChild = lab.RegisterChild("ch8.queue.overflow", ch8Overflow)

func ch8Overflow(loopback string) (evidence.QueueOverflow, error) {
	var seen evidence.QueueOverflow
	var err error
	if seen.AbortOnOverflow, err = sock.Sysctl("net.ipv4.tcp_abort_on_overflow"); err != nil {
		return seen, err
	}
	l, at, _, capture, err := ch8Deferred(loopback, ch8OverflowBacklog)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	defer capture.Close()
	seen.Listener = at.String()
	first, err := lab.TCPExt()
	if err != nil {
		return seen, err
	}
	var fds []int
	defer func() { lab.CloseAll(fds) }()
	client, err := lab.DialTo(at)
	if err != nil {
		return seen, err
	}
	fds = append(fds, client)
	local, _ := sock.LocalAddr(client)
	seen.Client = local.String()
	// Each filler's bytes complete its connection into the queue; the queue is full once
	// it holds one more than the backlog (sk_acceptq_is_full).
	for i := range ch8OverflowBacklog + 1 {
		fd, err := lab.DialTo(at)
		if err != nil {
			return seen, err
		}
		fds = append(fds, fd)
		local, _ := sock.LocalAddr(fd)
		seen.Fillers = append(seen.Fillers, local.String())
		if err := ch7Write(&seen.Calls, "filler", fd, []byte("f")); err != nil {
			return seen, err
		}
		if _, err := ch4AwaitQueue(l, uint32(i+1), lab.AcceptWithin); err != nil {
			return seen, err
		}
	}
	v, err := ch8Look("the fillers' bytes filled the accept queue", client, l, at)
	seen.Views = append(seen.Views, v)
	if err != nil {
		return seen, err
	}

	before, err := lab.TCPExt()
	if err != nil {
		return seen, err
	}
	if err := ch7Write(&seen.Calls, "client", client, []byte("GET")); err != nil {
		return seen, err
	}
	// tcp_v4_syn_recv_sock finds sk_acceptq_is_full and makes no socket (ListenOverflows,
	// ListenDrops); tcp_check_req then reads tcp_abort_on_overflow: 0, the segment is
	// dropped and the request kept; 1, embryonic_reset answers RST.
	after, err := ch4AwaitCounterRise(before, "ListenOverflows", lab.ReadWithin)
	if err != nil {
		return seen, err
	}
	seen.Counters = ch8Delta(before, after)
	seen.Cookies = after["SyncookiesSent"] - first["SyncookiesSent"]
	if seen.AbortOnOverflow == "1" {
		err = lab.WaitFor(client, unix.POLLIN, lab.ReadWithin) // the RST makes it readable
	}
	if err != nil {
		return seen, err
	}
	// Read at once, without waiting: EAGAIN when nothing came, ECONNRESET after the RST.
	buf := make([]byte, 16)
	at0 := time.Now()
	n, err := unix.Read(client, buf)
	seen.Recv = lab.ResultOf(n, err)
	seen.Calls.Add("client", "read", at0, seen.Recv)
	ti, err := unix.GetsockoptTCPInfo(client, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return seen, os.NewSyscallError("getsockopt TCP_INFO", err)
	}
	seen.Retransmits = ti.Total_retrans
	v, err = ch8Look("the client's bytes found the queue full", client, l, at)
	seen.Views = append(seen.Views, v)
	if err != nil {
		return seen, err
	}
	// The handshakes, the fillers' bytes and their ACKs, the client's bytes, an RST or not.
	want := 3*len(fds) + 2*len(seen.Fillers) + 1
	if seen.AbortOnOverflow == "1" {
		want++
	}
	seen.Packets, err = capture.ReadAll(want)
	return seen, err
}

// --8<-- [end:overflow-child]

// ch8OverflowBacklog is the overflow proof's backlog: its accept queue holds three, and its
// SYN queue never holds more than two requests, the client's and one filler's, below any
// kernel's threshold for cookies: a connection made from a cookie does not wait for data,
// cookie_v4_check makes it from the bare ACK.
const ch8OverflowBacklog = 2

// ch8FloodPort is the first source port of the SYNs the raw socket sends: no socket of the
// sandbox has it, so the SYN-ACKs that come back find none, and the kernel answers them RST.
const ch8FloodPort = 20000

// ch8SynBacklog is the flooded listener's backlog, which also bounds its SYN queue
// (inet_csk_reqsk_queue_is_full compares the requests with sk_max_ack_backlog).
const ch8SynBacklog = 4

// --8<-- [start:cookie-child]

// ch8CookieChild floods a listener with SYNs from a raw socket, one at a time, and watches
// each answer; then, unless the flood is being dropped, connects a real client.
var ch8CookieChild = lab.RegisterChild("ch8.queue.syncookies", ch8Cookie)

func ch8Cookie(loopback string) (evidence.SynCookies, error) {
	seen := evidence.SynCookies{Backlog: ch8SynBacklog}
	var err error
	if seen.Syncookies, err = sock.Sysctl("net.ipv4.tcp_syncookies"); err != nil {
		return seen, err
	}
	if seen.MaxSynBacklog, err = sock.Sysctl("net.ipv4.tcp_max_syn_backlog"); err != nil {
		return seen, err
	}
	lo := netip.MustParseAddr(loopback)
	l, at, capture, err := lab.ListenCaptured(netip.AddrPortFrom(lo, 0), ch8SynBacklog)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	defer capture.Close()
	seen.Listener = at.String()
	// The SYN-ACKs go to ports where nothing listens, and the kernel answers each with RST,
	// which would end the request at once: the listener's own socket filter drops RSTs
	// (tcp_filter runs before a request is looked at), so each request waits unanswered.
	if err := ch7Filter(l, ch8DropRST); err != nil {
		return seen, err
	}
	raw, err := ch8RawSocket(lo)
	if err != nil {
		return seen, err
	}
	defer unix.Close(raw)
	first, err := lab.TCPExt()
	if err != nil {
		return seen, err
	}

	var segs []evidence.Segment
	for i := range ch8SynBacklog + 3 {
		syn := evidence.FloodSyn{Port: ch8FloodPort + uint16(i)}
		before, err := lab.TCPExt()
		if err != nil {
			return seen, err
		}
		if err := ch8SendSYN(raw, netip.AddrPortFrom(lo, syn.Port), at); err != nil {
			return seen, err
		}
		// The answer: a SYN-ACK to that port on lo, or a drop in the counters.
		got, after, err := ch8Answer(capture, &segs, syn.Port, before)
		if err != nil {
			return seen, err
		}
		syn.Answer = got
		syn.Cookie = after["SyncookiesSent"] > before["SyncookiesSent"]
		syn.Dropped = after["ListenDrops"] > before["ListenDrops"]
		if syn.SynRecv, err = ch8SynRecvOn(at); err != nil {
			return seen, err
		}
		seen.Syns = append(seen.Syns, syn)
	}

	if seen.Syncookies != "0" {
		if err := ch8CookieClient(&seen, l, at); err != nil {
			return seen, err
		}
	}
	last, err := lab.TCPExt()
	if err != nil {
		return seen, err
	}
	seen.Counters = ch8Delta(first, last)
	more, err := capture.ReadAll(0)
	seen.Packets = append(segs, more...)
	return seen, err
}

// ch8CookieClient connects a real client to the flooded listener, which it accepts, and
// has the server read the client's bytes.
func ch8CookieClient(seen *evidence.SynCookies, l int, at netip.AddrPort) error {
	before, err := lab.TCPExt()
	if err != nil {
		return err
	}
	client, err := lab.DialTo(at)
	seen.Connected = lab.ResultOf(-1, err)
	if err != nil {
		return nil
	}
	defer unix.Close(client)
	local, _ := sock.LocalAddr(client)
	seen.Client = local.String()
	var calls evidence.Calls
	if err := ch7Write(&calls, "client", client, []byte("through")); err != nil {
		return err
	}
	fd, _, err := lab.AcceptOn(l, lab.AcceptWithin)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	got, err := ch7Read(&calls, "server", fd)
	if err != nil {
		return err
	}
	seen.Read = string(got)
	if seen.ClientSynRecv, err = ch8SynRecvOn(at); err != nil {
		return err
	}
	after, err := lab.TCPExt()
	seen.ClientCounters = ch8Delta(before, after)
	return err
}

// --8<-- [end:cookie-child]

// ch8Answer reads the capture until it holds the listener's answer to a SYN from port, or
// the counters show the SYN dropped, and returns the answer's flags ("" for none) and the
// counters then. Segments read go to segs.
func ch8Answer(c *lab.Capture, segs *[]evidence.Segment, port uint16, before lab.Counters) (string, lab.Counters, error) {
	deadline := time.Now().Add(lab.ReadWithin)
	for range 1000 {
		got, err := c.Read(8, 2*time.Millisecond)
		*segs = append(*segs, got...)
		if err != nil {
			return "", nil, err
		}
		after, err := lab.TCPExt()
		if err != nil {
			return "", nil, err
		}
		for _, s := range *segs {
			if s.Dst.Port() == port && s.Flags == "SYN,ACK" {
				return s.Flags, after, nil
			}
		}
		if after["ListenDrops"] > before["ListenDrops"] || time.Now().After(deadline) {
			return "", after, nil
		}
	}
	return "", nil, fmt.Errorf("no answer to the SYN from port %d", port)
}

// ch8SynRecvOn counts the requests in SYN_RECV on the listener at, in /proc/net/tcp.
func ch8SynRecvOn(at netip.AddrPort) (int, error) {
	domain := sock.Family(at)
	n := 0
	err := procfs.EachTCPTimed(domain, func(r procfs.TCPTimed) {
		if r.Local == at && r.State == procfs.TCPSynRecv {
			n++
		}
	})
	return n, err
}

// ch8DropRST is a classic BPF socket filter for a TCP socket, where the packet starts at the
// TCP header: it drops a segment with RST set (byte 13 holds the flags; RST is 0x04) and
// keeps the rest whole.
var ch8DropRST = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 13},
	{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: 0x04, Jt: 1},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffffffff},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

// ch8RawSocket is a raw TCP socket on the loopback address lo: what it sends, the kernel
// puts an IP header on from lo and sends as it is, TCP header included. It needs CAP_NET_RAW,
// which the sandbox's root has over its own namespace. It would receive a copy of every TCP
// segment too; a filter keeps its buffer empty.
func ch8RawSocket(lo netip.Addr) (int, error) {
	domain := sock.Family(netip.AddrPortFrom(lo, 0))
	fd, err := unix.Socket(domain, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, os.NewSyscallError("socket SOCK_RAW", err)
	}
	if err := ch7Filter(fd, ch7DropAll); err != nil {
		unix.Close(fd)
		return -1, err
	}
	sa, err := sock.Sockaddr(netip.AddrPortFrom(lo, 0))
	if err == nil {
		err = os.NewSyscallError("bind", unix.Bind(fd, sa))
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// ch8SendSYN writes a SYN from `from` to `to` on the raw socket: a TCP header with an MSS
// option, its checksum over the pseudo-header of RFC 9293 section 3.1 (RFC 8200 section 8.1
// for IPv6).
func ch8SendSYN(raw int, from, to netip.AddrPort) error {
	h := make([]byte, 24)
	binary.BigEndian.PutUint16(h[0:], from.Port())
	binary.BigEndian.PutUint16(h[2:], to.Port())
	binary.BigEndian.PutUint32(h[4:], 1000*uint32(from.Port())) // the SYN's sequence number
	h[12] = 6 << 4                                              // data offset: 6 words
	h[13] = 0x02                                                // SYN
	binary.BigEndian.PutUint16(h[14:], 65535)                   // window
	copy(h[20:], []byte{2, 4, 0x05, 0xb4})                      // MSS 1460
	binary.BigEndian.PutUint16(h[16:], ch8Checksum(from.Addr(), to.Addr(), h))
	sa, err := sock.Sockaddr(netip.AddrPortFrom(to.Addr(), 0))
	if err != nil {
		return err
	}
	return os.NewSyscallError("sendto", unix.Sendto(raw, h, 0, sa))
}

// ch8Checksum is the TCP checksum of seg between src and dst: the ones' complement sum of
// the pseudo-header (the addresses, the protocol, the length) and the segment.
func ch8Checksum(src, dst netip.Addr, seg []byte) uint16 {
	var pseudo []byte
	pseudo = append(pseudo, src.AsSlice()...)
	pseudo = append(pseudo, dst.AsSlice()...)
	if src.Is4() {
		pseudo = append(pseudo, 0, unix.IPPROTO_TCP, byte(len(seg)>>8), byte(len(seg)))
	} else {
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(seg)))
		pseudo = append(pseudo, 0, 0, 0, unix.IPPROTO_TCP)
	}
	var sum uint32
	for _, b := range [][]byte{pseudo, seg} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
