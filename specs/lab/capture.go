//go:build linux

package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
	"unsafe"

	"portproof/specs/evidence"

	"golang.org/x/sys/unix"
)

// FlagsOf lists the segments' flags in order: ["SYN", "SYN,ACK", "ACK"] for a handshake.
func FlagsOf(segs []evidence.Segment) []string {
	flags := make([]string, len(segs))
	for i, s := range segs {
		flags[i] = s.Flags
	}
	return flags
}

// Capture is a packet socket on lo that keeps the TCP segments to or from one port, over
// IPv4 and IPv6. It works only in a sandbox child: there lo carries the proof's packets
// alone, and the child holds CAP_NET_RAW over its namespace, which AF_PACKET needs (EPERM
// otherwise).
type Capture struct {
	fd   int
	port uint16
	// isn is each direction's initial sequence number, from its SYN, by (sender, receiver):
	// a listener's end has one address for all its connections, and an ISN for each.
	isn map[[2]netip.AddrPort]uint32
}

// captureSnap is how many bytes of each packet the filter keeps: the largest IPv4 header (60)
// and the TCP header's fixed 20 bytes, or IPv6's 40 and TCP's largest (60).
const captureSnap = 128

// ListenCaptured is ListenOn with a capture of the listener's port (StartCapture), started
// before any client can come: where a child that reads its proof's packets starts. It works
// in a sandbox child only, as StartCapture does; on an error nothing is left open.
func ListenCaptured(at netip.AddrPort, backlog int) (int, netip.AddrPort, *Capture, error) {
	l, addr, err := ListenOn(at, backlog)
	if err != nil {
		return -1, addr, nil, err
	}
	c, err := StartCapture(addr.Port())
	if err != nil {
		unix.Close(l)
		return -1, addr, nil, err
	}
	return l, addr, c, nil
}

// StartCapture starts capturing on lo the TCP segments whose source or destination port is
// port. Start it before the traffic: it sees what lo carries from then on.
func StartCapture(port uint16) (*Capture, error) {
	if !inChild.Load() {
		return nil, errors.New("lab.StartCapture works only in a sandbox child (lab.InSandbox), where lo carries the proof's traffic alone")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return nil, err
	}
	// SOCK_DGRAM: the kernel strips the link-layer header, so every packet starts with its
	// IP header. Protocol 0 receives nothing until bind names one: the filter is in place
	// before the first packet can be queued.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket AF_PACKET", err)
	}
	c := &Capture{fd: fd, port: port, isn: map[[2]netip.AddrPort]uint32{}}
	if err := c.setUpSandbox(lo.Index); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if _, err := awaitRxTimestamps(captureStampWithin); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

// captureStampWithin bounds the wait for the kernel to stamp packets on arrival.
const captureStampWithin = 2 * time.Second

// awaitRxTimestamps returns once the kernel stamps packets as lo receives them, and so
// once a capture's times are when the segments moved. StartCapture calls it. SO_TIMESTAMPNS (set by StartCapture)
// turns on the kernel-wide switch netstamp_needed_key, but net_enable_timestamp flips it
// from a workqueue, a little later; until then netif_rx stamps nothing, and recvmsg fills in
// its own time instead (__sock_recv_timestamp), which would put every packet at the moment
// the proof read it. The probe is a UDP datagram to itself: stamped on arrival, its time is
// before sendto returned; stamped by recvmsg, after.
func awaitRxTimestamps(within time.Duration) (probes int, err error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return 0, os.NewSyscallError("setsockopt SO_TIMESTAMPNS", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return 0, os.NewSyscallError("bind", err)
	}
	self, err := unix.Getsockname(fd)
	if err != nil {
		return 0, os.NewSyscallError("getsockname", err)
	}
	deadline := time.Now().Add(within)
	buf := make([]byte, 8)
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))
	for probes = 1; probes <= 1000 && time.Now().Before(deadline); probes++ {
		if err := unix.Sendto(fd, []byte("t"), 0, self); err != nil {
			return probes, os.NewSyscallError("sendto", err)
		}
		sent := time.Now()
		if err := WaitFor(fd, unix.POLLIN, time.Until(deadline)); err != nil {
			return probes, err
		}
		_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		if err != nil {
			return probes, os.NewSyscallError("recvmsg", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return probes, err
		}
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				if !time.Unix(ts.Unix()).After(sent) {
					return probes, nil
				}
			}
		}
		time.Sleep(time.Millisecond) // the workqueue's turn
	}
	return probes, fmt.Errorf("the kernel did not stamp packets on arrival within %v (%d probes): capture times would be read times", within, probes)
}

func (c *Capture) setUpSandbox(ifindex int) error {
	filter := tcpPortFilter(c.port)
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.SetsockoptSockFprog(c.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		return os.NewSyscallError("setsockopt SO_ATTACH_FILTER", err)
	}
	// A packet sent on lo passes the packet taps twice: going out (dev_queue_xmit_nit, as
	// PACKET_OUTGOING) and coming back in (as PACKET_HOST). PACKET_IGNORE_OUTGOING (Linux
	// 4.20) keeps the second copy only; an older kernel says ENOPROTOOPT and Read drops the
	// outgoing copies itself.
	err := unix.SetsockoptInt(c.fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	if err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		return os.NewSyscallError("setsockopt PACKET_IGNORE_OUTGOING", err)
	}
	if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return os.NewSyscallError("setsockopt SO_TIMESTAMPNS", err)
	}
	// The kernel caps SO_RCVBUF at net.core.rmem_max (host-wide; a child namespace sees a
	// read-only copy) without an error; packets beyond the buffer are dropped and counted,
	// and Read reports them.
	if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20); err != nil {
		return os.NewSyscallError("setsockopt SO_RCVBUF", err)
	}
	// sll_protocol is in network byte order, like the EtherType on the wire.
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(c.fd, sa); err != nil {
		return os.NewSyscallError("bind AF_PACKET lo", err)
	}
	return nil
}

// Read returns the segments captured since the last Read, oldest first, once it has n of
// them or within has passed, whichever comes first: fewer than n is not an error, the proof
// decides. The error is not nil when the kernel dropped packets meant for this socket (its
// buffer was full): the picture is then incomplete.
func (c *Capture) Read(n int, within time.Duration) ([]evidence.Segment, error) {
	deadline := time.Now().Add(within)
	buf := make([]byte, captureSnap)
	oob := make([]byte, unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))))
	var segs []evidence.Segment
	for attempt := 0; len(segs) < n && attempt < 4*n+1000; attempt++ {
		m, oobn, _, from, err := unix.Recvmsg(c.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) {
			ms := int(time.Until(deadline).Milliseconds())
			if ms <= 0 {
				break
			}
			_, err = unix.Poll([]unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}, ms)
			if err != nil && !errors.Is(err, unix.EINTR) {
				return segs, os.NewSyscallError("poll", err)
			}
			continue
		}
		if err != nil {
			return segs, os.NewSyscallError("recvmsg", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		seg, seq, ack, ok := parseSegment(buf[:m])
		if !ok {
			continue
		}
		seg.Time = kernelTime(oob[:oobn])
		c.relative(&seg, seq, ack)
		segs = append(segs, seg)
	}
	// PACKET_STATISTICS counts since the last read of it, and reading resets it.
	stats, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return segs, os.NewSyscallError("getsockopt PACKET_STATISTICS", err)
	}
	if stats.Drops > 0 {
		return segs, fmt.Errorf("capture on port %d: the kernel dropped %d packets (receive buffer full): the segments are incomplete", c.port, stats.Drops)
	}
	return segs, nil
}

// Close closes the packet socket.
// ReadAll reads at least want segments, or what came within ReadWithin, then whatever else
// the capture holds at no wait: nothing unexpected, an RST say, hides behind the segments the
// proof waited for.
func (c *Capture) ReadAll(want int) ([]evidence.Segment, error) {
	segs, err := c.Read(want, ReadWithin)
	if err != nil {
		return segs, err
	}
	more, err := c.Read(64, 0)
	return append(segs, more...), err
}

func (c *Capture) Close() error { return os.NewSyscallError("close", unix.Close(c.fd)) }

func (c *Capture) relative(s *evidence.Segment, seq, ack uint32) {
	if strings.Contains(s.Flags, "SYN") {
		c.isn[[2]netip.AddrPort{s.Src, s.Dst}] = seq
	}
	s.Seq = seq - c.isn[[2]netip.AddrPort{s.Src, s.Dst}]
	if !strings.Contains(s.Flags, "ACK") {
		return
	}
	s.Ack = ack - c.isn[[2]netip.AddrPort{s.Dst, s.Src}]
}

// tcpPortFilter is a classic BPF program (SO_ATTACH_FILTER) that passes the first
// captureSnap bytes of TCP segments from or to port and drops every other packet in the
// kernel, before it takes room in the socket's buffer. The packet starts at the IP header
// (SOCK_DGRAM). IPv6 is matched only when TCP follows the fixed header at once: loopback
// TCP carries no extension headers.
func tcpPortFilter(port uint16) []unix.SockFilter {
	p := uint32(port)
	const (
		ldb  = unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
		ldh  = unix.BPF_LD | unix.BPF_H | unix.BPF_ABS
		ldhx = unix.BPF_LD | unix.BPF_H | unix.BPF_IND
		msh  = unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH
		rsh  = unix.BPF_ALU | unix.BPF_RSH | unix.BPF_K
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	// Jt and Jf count the instructions to skip: the target is the next one plus that.
	return []unix.SockFilter{
		/* 0 */ {Code: ldb, K: 0}, // version<<4 | IHL
		/* 1 */ {Code: rsh, K: 4},
		/* 2 */ {Code: jeq, K: 4, Jf: 9}, // IPv6 at 12
		/* 3 */ {Code: ldb, K: 9}, // IPv4 protocol
		/* 4 */ {Code: jeq, K: unix.IPPROTO_TCP, Jf: 15},
		/* 5 */ {Code: ldh, K: 6}, // flags and fragment offset
		/* 6 */ {Code: jset, K: 0x1fff, Jt: 13}, // a later fragment has no TCP header
		/* 7 */ {Code: msh, K: 0}, // X = IHL*4, where TCP starts
		/* 8 */ {Code: ldhx, K: 0}, // source port
		/* 9 */ {Code: jeq, K: p, Jt: 9},
		/* 10 */ {Code: ldhx, K: 2}, // destination port
		/* 11 */ {Code: jeq, K: p, Jt: 7, Jf: 8},
		/* 12 */ {Code: jeq, K: 6, Jf: 7},
		/* 13 */ {Code: ldb, K: 6}, // IPv6 next header
		/* 14 */ {Code: jeq, K: unix.IPPROTO_TCP, Jf: 5},
		/* 15 */ {Code: ldh, K: 40}, // source port
		/* 16 */ {Code: jeq, K: p, Jt: 2},
		/* 17 */ {Code: ldh, K: 42}, // destination port
		/* 18 */ {Code: jeq, K: p, Jf: 1},
		/* 19 */ {Code: ret, K: captureSnap},
		/* 20 */ {Code: ret, K: 0},
	}
}

// parseSegment reads an IPv4 or IPv6 packet carrying TCP. Seg's Seq and Ack are left to the
// caller, which gets the raw numbers.
func parseSegment(b []byte) (seg evidence.Segment, seq, ack uint32, ok bool) {
	var tcp []byte
	var payload int
	switch {
	case len(b) >= 20 && b[0]>>4 == 4:
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || b[9] != unix.IPPROTO_TCP || len(b) < ihl+20 {
			return seg, 0, 0, false
		}
		tcp = b[ihl:]
		seg.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[12:16])), be16(tcp[0:]))
		seg.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[16:20])), be16(tcp[2:]))
		payload = int(be16(b[2:])) - ihl // total length
	case len(b) >= 60 && b[0]>>4 == 6:
		if b[6] != unix.IPPROTO_TCP {
			return seg, 0, 0, false
		}
		tcp = b[40:]
		seg.Src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])), be16(tcp[0:]))
		seg.Dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[24:40])), be16(tcp[2:]))
		payload = int(be16(b[4:])) // payload length: what follows the fixed header
	default:
		return seg, 0, 0, false
	}
	doff := int(tcp[12]>>4) * 4
	seg.Len = payload - doff
	if doff < 20 || seg.Len < 0 {
		return seg, 0, 0, false
	}
	seg.Flags = tcpFlags(tcp[13])
	return seg, binary.BigEndian.Uint32(tcp[4:]), binary.BigEndian.Uint32(tcp[8:]), true
}

// tcpFlags names the flag bits in the order of the header, FIN first, as "SYN,ACK".
func tcpFlags(f byte) string {
	names := [...]string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}
	var set []string
	for i, name := range names {
		if f&(1<<i) != 0 {
			set = append(set, name)
		}
	}
	return strings.Join(set, ",")
}

// kernelTime is the SCM_TIMESTAMPNS the kernel attached, the time lo received the packet;
// the time of the read when there is none.
func kernelTime(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS &&
				len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})) {
				ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
				return time.Unix(ts.Unix())
			}
		}
	}
	return time.Now()
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
