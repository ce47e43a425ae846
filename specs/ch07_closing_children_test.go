//go:build linux

package specs

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/procfs"
	"portproof/internal/testkit"
	"portproof/refserver"
	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// Chapter 7's sandbox children. Each runs in a network namespace of its own, where lo
// carries its packets alone (lab.StartCapture), /proc/net/tcp lists its sockets alone, and
// a setting such as tcp_fin_timeout can be changed without touching the host's.

// ch7Conn is a connection as a child made it: the client's end, the server's, and the
// address of each.
type ch7Conn struct {
	client, server int
	Client, Server netip.AddrPort
}

// ch7Listener is a listener on the child's loopback address with a capture of its port, and
// the connections made on it.
type ch7Listener struct {
	fd      int
	at      netip.AddrPort
	capture *lab.Capture
	conns   []*ch7Conn
}

// ch7Listen is the listener of the children that are not refserver's (lab.ListenCaptured).
func ch7Listen(loopback string) (*ch7Listener, error) {
	fd, at, c, err := lab.ListenCaptured(netip.AddrPortFrom(netip.MustParseAddr(loopback), 0), 8)
	if err != nil {
		return nil, err
	}
	return &ch7Listener{fd: fd, at: at, capture: c}, nil
}

// connect connects a client to the listener and accepts it.
func (l *ch7Listener) connect() (*ch7Conn, error) {
	c := &ch7Conn{client: -1, server: -1, Server: l.at}
	l.conns = append(l.conns, c)
	var err error
	if c.client, err = lab.DialTo(l.at); err != nil {
		return c, err
	}
	if c.Client, err = sock.LocalAddr(c.client); err != nil {
		return c, err
	}
	c.server, _, err = lab.AcceptOn(l.fd, lab.AcceptWithin)
	return c, err
}

// close closes what is left of the listener's connections, then the capture and the
// listener.
func (l *ch7Listener) close() {
	for _, c := range l.conns {
		c.close()
	}
	l.capture.Close()
	unix.Close(l.fd)
}

// ch7Open is where the half-close and the TIME_WAIT children start: ch7Listen, and one
// connection on it, whose ends it records in e. On an error nothing is left open.
func ch7Open(loopback string, e *evidence.CloseEnds) (*ch7Listener, *ch7Conn, error) {
	l, err := ch7Listen(loopback)
	if err != nil {
		return nil, nil, err
	}
	c, err := l.connect()
	if err != nil {
		l.close()
		return nil, nil, err
	}
	e.Client, e.Server = c.Client.String(), c.Server.String()
	return l, c, nil
}

// close closes whichever end the child has not closed itself.
func (c *ch7Conn) close() {
	for _, fd := range []*int{&c.client, &c.server} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// ch7Close is close(2) on one end, recorded; the end is forgotten, whatever the answer.
func ch7Close(calls *evidence.Calls, who string, fd *int) error {
	at := time.Now()
	err := unix.Close(*fd)
	*fd = -1
	calls.Add(who, "close", at, lab.ResultOf(-1, err))
	return os.NewSyscallError("close", err)
}

// ch7Read waits for the end to be readable and reads once, recorded: what came, "EOF", or
// the errno. The errno is the answer here, not a failure of the child.
func ch7Read(calls *evidence.Calls, who string, fd int) ([]byte, error) {
	if err := lab.WaitFor(fd, unix.POLLIN, lab.ReadWithin); err != nil {
		return nil, err
	}
	buf := make([]byte, 256)
	at := time.Now()
	n, err := unix.Read(fd, buf)
	calls.Add(who, "read", at, lab.ResultOf(n, err))
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// ch7Write sends p with MSG_NOSIGNAL, recorded: a write after shutdown(SHUT_WR) is EPIPE,
// and without the flag the kernel would raise SIGPIPE too.
func ch7Write(calls *evidence.Calls, who string, fd int, p []byte) error {
	at := time.Now()
	n, err := unix.SendmsgN(fd, p, nil, nil, unix.MSG_NOSIGNAL)
	if err == nil && n < len(p) {
		err = fmt.Errorf("sendmsg: %d of %d bytes", n, len(p))
	}
	calls.Add(who, fmt.Sprintf("write(%q)", p), at, lab.ResultOf(n, err))
	return err
}

// ch7Shutdown is shutdown(SHUT_WR), recorded.
func ch7Shutdown(calls *evidence.Calls, who string, fd int) error {
	at := time.Now()
	err := unix.Shutdown(fd, unix.SHUT_WR)
	calls.Add(who, "shutdown(SHUT_WR)", at, lab.ResultOf(-1, err))
	return os.NewSyscallError("shutdown", err)
}

// ch7Await reads the end with TCP_INFO until its state is want, at most lab.ReadWithin.
func ch7Await(who string, fd int, want string) (evidence.StateSeen, error) {
	s, err := lab.AwaitState(func() (evidence.StateSeen, error) { return lab.StateOf(who, fd) }, want, lab.ReadWithin)
	if err == nil && s.State != want {
		err = fmt.Errorf("the %s's end stayed %s, not %s (TCP_INFO)", who, s.State, want)
	}
	return s, err
}

// ch7AwaitTable reads the end local -> remote in /proc/net/tcp until its state is want.
func ch7AwaitTable(who string, local, remote netip.AddrPort, want string) (evidence.StateSeen, error) {
	s, err := lab.AwaitState(func() (evidence.StateSeen, error) { return lab.TableStateOf(who, local, remote) }, want, lab.ReadWithin)
	if err == nil && s.State != want {
		err = fmt.Errorf("the %s's end stayed %s, not %s (/proc/net/tcp)", who, s.State, want)
	}
	return s, err
}

// ch7Acked reads the end's TCP_INFO until nothing it sent is unacknowledged (tcpi_unacked
// 0), at most a second, and returns the last count: on lo the peer's kernel acknowledges at
// once.
func ch7Acked(fd int) (uint32, error) {
	var unacked uint32
	for range 1000 {
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return unacked, os.NewSyscallError("getsockopt TCP_INFO", err)
		}
		if unacked = ti.Unacked; unacked == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return unacked, nil
}

// --8<-- [start:half-child]

// ch7HalfChild: the client says it has no more to send with shutdown(SHUT_WR); the server
// reads end-of-stream, answers, and the client reads the answer.
var ch7HalfChild = lab.RegisterChild("ch7.close.half", ch7Half)

func ch7Half(loopback string) (evidence.HalfClose, error) {
	var seen evidence.HalfClose
	l, c, err := ch7Open(loopback, &seen.CloseEnds)
	if err != nil {
		return seen, err
	}
	defer l.close()
	calls := &seen.Calls

	if err := ch7Shutdown(calls, "client", c.client); err != nil {
		return seen, err
	}
	// The FIN is acknowledged at once on lo: the client waits for the server's FIN
	// (FIN_WAIT2), the server for its own program to close (CLOSE_WAIT).
	if err := seen.Note(ch7Await("client", c.client, "FIN_WAIT2")); err != nil {
		return seen, err
	}
	if err := seen.Note(ch7Await("server", c.server, "CLOSE_WAIT")); err != nil {
		return seen, err
	}
	if _, err := ch7Read(calls, "server", c.server); err != nil { // EOF: read(2) returns 0
		return seen, err
	}
	// The server's direction is still open: it writes, and the half-closed client reads.
	if err := ch7Write(calls, "server", c.server, []byte("still here")); err != nil {
		return seen, err
	}
	got, err := ch7Read(calls, "client", c.client)
	if err != nil {
		return seen, err
	}
	seen.Read = string(got)
	// Its own direction is shut: write(2) fails with EPIPE, and sends nothing.
	seen.WriteErr = sock.ErrnoName(ch7Write(calls, "client", c.client, []byte("more")))
	if err := seen.Note(lab.StateOf("client", c.client)); err != nil {
		return seen, err
	}
	// Handshake, FIN and its ACK, the server's data and its ACK: seven segments.
	seen.Packets, err = l.capture.ReadAll(7)
	return seen, err
}

// --8<-- [end:half-child]

// --8<-- [start:linger-child]

// ch7LingerChild: refserver's Shutdown ends a connection it has answered; its client goes
// on sending after the server's FIN, then closes.
var ch7LingerChild = lab.RegisterChild("ch7.close.linger", ch7Linger)

func ch7Linger(loopback string) (evidence.LingeringClose, error) {
	var seen evidence.LingeringClose
	at := netip.AddrPortFrom(netip.MustParseAddr(loopback), 0)
	srv, err := refserver.New(refserver.Config{Addr: at, Loops: 1, Handler: refserver.Echo{}})
	if err != nil {
		return seen, err
	}
	go srv.Serve()
	stopped := make(chan error, 1)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx) // at once when the child already shut it down
	}()
	capture, err := lab.StartCapture(srv.Addr().Port())
	if err != nil {
		return seen, err
	}
	defer capture.Close()
	client, err := lab.DialTo(srv.Addr())
	if err != nil {
		return seen, err
	}
	defer unix.Close(client)
	local, err := sock.LocalAddr(client)
	if err != nil {
		return seen, err
	}
	seen.Client, seen.Server = local.String(), srv.Addr().String()
	calls := &seen.Calls
	if err := ch7Write(calls, "client", client, []byte("hello")); err != nil {
		return seen, err
	}
	echo, err := ch7Read(calls, "client", client)
	if err != nil {
		return seen, err
	}
	seen.Echo = string(echo)

	// Shutdown answers what each connection had sent, then shutdown(SHUT_WR) (settle in
	// refserver/loop.go): the client reads end-of-stream while refserver still reads.
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), lab.ReadWithin)
		defer cancel()
		calls.Add("server", "Shutdown", time.Now(), "")
		stopped <- srv.Shutdown(ctx)
	}()
	if _, err := ch7Read(calls, "client", client); err != nil {
		return seen, err
	}
	if err := seen.Note(ch7Await("client", client, "CLOSE_WAIT")); err != nil {
		return seen, err
	}
	if err := seen.Note(ch7AwaitTable("server", srv.Addr(), local, "FIN_WAIT2")); err != nil {
		return seen, err
	}
	// The client had more to say. refserver reads and drops it: no RST, which a close(2)
	// with these bytes arriving would have sent.
	if err := ch7Write(calls, "client", client, []byte("late")); err != nil {
		return seen, err
	}
	if seen.LateUnacked, err = ch7Acked(client); err != nil {
		return seen, err
	}
	if err := seen.Note(lab.StateOf("client", client)); err != nil {
		return seen, err
	}
	if err := ch7Close(calls, "client", &client); err != nil {
		return seen, err
	}
	// refserver reads the client's FIN, closes, and Shutdown returns: its end is the one
	// that closed first, and stays in TIME_WAIT.
	err = <-stopped
	seen.ShutdownDone, seen.ShutdownErr = time.Now(), fmt.Sprint(err)
	seen.Resets = srv.Stats().Resets
	if err := seen.Note(ch7AwaitTable("server", srv.Addr(), local, "TIME_WAIT")); err != nil {
		return seen, err
	}
	// Handshake, data and echo with their ACKs, the two FINs with theirs, and the late bytes.
	seen.Packets, err = capture.ReadAll(13)
	return seen, err
}

// --8<-- [end:linger-child]

// --8<-- [start:unread-child]

// ch7UnreadChild closes two connections from the server's side: one whose client's bytes
// the server never read, one whose it did. Before closing, each server answers "bye".
var ch7UnreadChild = lab.RegisterChild("ch7.close.rst-unread", ch7Unread)

func ch7Unread(loopback string) ([]evidence.UnreadClose, error) {
	var all []evidence.UnreadClose
	l, err := ch7Listen(loopback)
	if err != nil {
		return all, err
	}
	defer l.close()
	for _, readFirst := range []bool{false, true} {
		cases := map[bool]string{false: "unread", true: "read first"}
		seen := evidence.UnreadClose{Case: cases[readFirst]}
		calls := &seen.Calls
		c, err := l.connect()
		if err != nil {
			return all, err
		}
		seen.Client, seen.Server = c.Client.String(), c.Server.String()
		if err := ch7Write(calls, "client", c.client, []byte("abc")); err != nil {
			return all, err
		}
		if readFirst {
			if _, err := ch7Read(calls, "server", c.server); err != nil {
				return all, err
			}
		}
		if err := ch7Write(calls, "server", c.server, []byte("bye")); err != nil {
			return all, err
		}
		// What the server's kernel holds unread (SIOCINQ), once the client's bytes and the
		// server's "bye" have crossed: the client's kernel saw both acknowledged.
		want := len("abc")
		if readFirst {
			want = 0
		}
		if seen.Unread, seen.Unacked, err = ch7Settled(c, want); err != nil {
			return all, err
		}
		before, err := lab.TCPExt()
		if err != nil {
			return all, err
		}
		// close(2): __tcp_close finds the receive queue not empty and sends RST, counting
		// TCPAbortOnClose ("As outlined in RFC 2525, section 2.17, we send a RST here
		// because data was lost"), or sends FIN when it is empty.
		if err := ch7Close(calls, "server", &c.server); err != nil {
			return all, err
		}
		after, err := lab.TCPExt()
		if err != nil {
			return all, err
		}
		seen.AbortOnClose = after["TCPAbortOnClose"] - before["TCPAbortOnClose"]
		for range 3 { // "bye", then end-of-stream or ECONNRESET
			got, err := ch7Read(calls, "client", c.client)
			if err != nil || len(got) == 0 {
				seen.Received = append(seen.Received, lab.ResultOf(len(got), err))
				break
			}
			seen.Received = append(seen.Received, string(got))
		}
		st, err := lab.StateOf("client", c.client)
		seen.States = append(seen.States, st)
		if err != nil {
			return all, err
		}
		all = append(all, seen)
	}
	// Two handshakes (3 each), the data, "bye" and the ACKs, then RST; or FIN and its ACK.
	segs, err := l.capture.ReadAll(16)
	for i := range all {
		for _, s := range segs {
			if s.Src.String() == all[i].Client || s.Dst.String() == all[i].Client {
				all[i].Packets = append(all[i].Packets, s)
			}
		}
	}
	return all, err
}

// --8<-- [end:unread-child]

// ch7Settled waits until the server's end holds want unread bytes (SIOCINQ) and the client
// has nothing unacknowledged, and returns both.
func ch7Settled(c *ch7Conn, want int) (int, uint32, error) {
	var n int
	var unacked uint32
	for range 1000 {
		var err error
		if n, err = unix.IoctlGetInt(c.server, unix.SIOCINQ); err != nil {
			return n, unacked, os.NewSyscallError("ioctl SIOCINQ", err)
		}
		ti, err := unix.GetsockoptTCPInfo(c.client, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return n, unacked, os.NewSyscallError("getsockopt TCP_INFO", err)
		}
		unacked = ti.Unacked
		if n == want && unacked == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return n, unacked, nil
}

// ch7Filter attaches a classic BPF program to the socket fd (SO_ATTACH_FILTER).
func ch7Filter(fd int, prog []unix.SockFilter) error {
	p := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return os.NewSyscallError("setsockopt SO_ATTACH_FILTER",
		unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &p))
}

// ch7DropAll is a classic BPF socket filter that takes nothing: attached to a TCP socket
// (SO_ATTACH_FILTER), tcp_filter drops every segment that arrives for it before TCP sees it.
var ch7DropAll = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// --8<-- [start:timewait-child]

// ch7TimeWaitChild: the server closes first; the client, told by the server's FIN, closes
// too. A socket filter on the client's end holds back the ACK of its FIN for a moment, so
// that LAST_ACK can be read before it ends.
var ch7TimeWaitChild = lab.RegisterChild("ch7.close.timewait", ch7TimeWait)

func ch7TimeWait(loopback string) (evidence.TimeWait, error) {
	var seen evidence.TimeWait
	var err error
	if seen.FinTimeout, err = sock.Sysctl("net.ipv4.tcp_fin_timeout"); err != nil {
		return seen, err
	}
	l, c, err := ch7Open(loopback, &seen.CloseEnds)
	if err != nil {
		return seen, err
	}
	defer l.close()
	calls := &seen.Calls
	server := func() (evidence.StateSeen, error) {
		return lab.TableStateOf("server", c.Server, c.Client)
	}

	// The server closes first: FIN, acknowledged at once. Its end has no descriptor now;
	// the kernel keeps it, in FIN_WAIT2, on tcp_fin_timeout's clock (tcp_fin_time).
	if err := ch7Close(calls, "server", &c.server); err != nil {
		return seen, err
	}
	if err := seen.Note(ch7AwaitTable("server", c.Server, c.Client, "FIN_WAIT2")); err != nil {
		return seen, err
	}
	if err := seen.Note(ch7Await("client", c.client, "CLOSE_WAIT")); err != nil {
		return seen, err
	}
	if _, err := ch7Read(calls, "client", c.client); err != nil { // EOF
		return seen, err
	}

	// The client closes its direction: FIN. Its filter drops the server's ACK.
	calls.Add("client", "SO_ATTACH_FILTER", time.Now(), "")
	if err := ch7Filter(c.client, ch7DropAll); err != nil {
		return seen, err
	}
	if err := ch7Shutdown(calls, "client", c.client); err != nil {
		return seen, err
	}
	// The server's end got the FIN: TIME_WAIT, on TCP_TIMEWAIT_LEN's clock.
	if err := seen.Note(lab.AwaitState(server, "TIME_WAIT", lab.ReadWithin)); err != nil {
		return seen, err
	}
	if err := seen.Note(ch7Await("client", c.client, "LAST_ACK")); err != nil {
		return seen, err
	}
	// Without the filter, the ACK that answers the FIN's retransmission gets through.
	calls.Add("client", "SO_DETACH_FILTER", time.Now(), "")
	if err := unix.SetsockoptInt(c.client, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil {
		return seen, os.NewSyscallError("setsockopt SO_DETACH_FILTER", err)
	}
	if err := seen.Note(ch7Await("client", c.client, "CLOSE")); err != nil {
		return seen, err
	}
	if err := ch7Close(calls, "client", &c.client); err != nil {
		return seen, err
	}
	if seen.Left, err = ch7Left(c); err != nil {
		return seen, err
	}
	if err := seen.Note(server()); err != nil {
		return seen, err
	}
	// Handshake, FIN and ACK each way, the FIN again and the ACKs the filter dropped.
	if seen.Packets, err = l.capture.ReadAll(9); err != nil {
		return seen, err
	}
	seen.Linger, err = ch7LingerZero(l)
	return seen, err
}

// --8<-- [end:timewait-child]

// --8<-- [start:linger-zero-child]

// ch7LingerZero closes a second connection's server end with SO_LINGER {1, 0}.
func ch7LingerZero(l *ch7Listener) (evidence.LingerReset, error) {
	var seen evidence.LingerReset
	c, err := l.connect()
	if err != nil {
		return seen, err
	}
	seen.Client, seen.Server = c.Client.String(), c.Server.String()
	calls := &seen.Calls
	// l_onoff 1, l_linger 0: close(2) is tcp_disconnect, an RST, and the end is gone.
	if err := unix.SetsockoptLinger(c.server, unix.SOL_SOCKET, unix.SO_LINGER,
		&unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		return seen, os.NewSyscallError("setsockopt SO_LINGER", err)
	}
	if err := ch7Close(calls, "server", &c.server); err != nil {
		return seen, err
	}
	got, err := ch7Read(calls, "client", c.client)
	seen.Read = lab.ResultOf(len(got), err)
	if err := seen.Note(lab.StateOf("client", c.client)); err != nil {
		return seen, err
	}
	if seen.Left, err = ch7Left(c); err != nil {
		return seen, err
	}
	seen.Packets, err = l.capture.ReadAll(4) // handshake, RST
	return seen, err
}

// --8<-- [end:linger-zero-child]

// ch7Left is what the kernel's table holds of the connection, by end: its state, or "".
func ch7Left(c *ch7Conn) (map[string]string, error) {
	left := map[string]string{}
	for who, ends := range map[string][2]netip.AddrPort{"server": {c.Server, c.Client}, "client": {c.Client, c.Server}} {
		s, err := lab.TableStateOf(who, ends[0], ends[1])
		if err != nil && !errors.Is(err, lab.ErrNoRow) {
			return left, err
		}
		left[who] = s.State
	}
	return left, nil
}

// --8<-- [start:reuse-child]

// ch7ReuseChild runs refserver, has it close its connections first (Shutdown), then binds
// its address without SO_REUSEADDR, and starts refserver again on it.
var ch7ReuseChild = lab.RegisterChild("ch7.close.reuseaddr", ch7Reuse)

func ch7Reuse(loopback string) (evidence.ReuseAddr, error) {
	var seen evidence.ReuseAddr
	cfg := refserver.Config{Addr: netip.AddrPortFrom(netip.MustParseAddr(loopback), 0), Loops: 1,
		Handler: refserver.Echo{}}
	first, err := refserver.New(cfg)
	if err != nil {
		return seen, err
	}
	addr := first.Addr()
	seen.Addr = addr.String()
	go first.Serve()
	var clients []int
	defer func() { lab.CloseAll(clients) }()
	for range 3 {
		fd, echo, err := ch7Served(addr)
		if err != nil {
			return seen, err
		}
		if echo != "ping" {
			return seen, fmt.Errorf("the first run echoed %q to %q", echo, "ping")
		}
		clients = append(clients, fd)
	}
	// Shutdown sends each client FIN first; each client reads end-of-stream and closes,
	// and refserver's end of each goes to TIME_WAIT.
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), lab.ReadWithin)
		defer cancel()
		stopped <- first.Shutdown(ctx)
	}()
	var calls evidence.Calls
	for i := range clients {
		if _, err := ch7Read(&calls, "client", clients[i]); err != nil {
			return seen, err
		}
		if err := ch7Close(&calls, "client", &clients[i]); err != nil {
			return seen, err
		}
	}
	if err := <-stopped; err != nil {
		return seen, err
	}
	if seen.TimeWaits, seen.Listening, err = ch7TimeWaitsOn(addr, len(clients)); err != nil {
		return seen, err
	}

	// Nothing listens there now, and no descriptor holds the port: only the TIME_WAITs.
	plain, err := sock.Socket(sock.Family(addr))
	if err != nil {
		return seen, err
	}
	seen.PlainBind = sock.ErrnoName(sock.Bind(plain, addr))
	unix.Close(plain)

	// refserver's own listener: socket, SO_REUSEADDR, bind, listen.
	narration := testkit.NewLines()
	cfg.Addr, cfg.Log = addr, log.New(narration, "", 0)
	second, err := refserver.New(cfg)
	seen.Restart = fmt.Sprint(err)
	if err != nil {
		return seen, nil
	}
	go second.Serve()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), lab.ReadWithin)
		defer cancel()
		second.Shutdown(ctx)
	}()
	seen.Narration = narration.All()
	lfd := second.Listeners()[0]
	seen.ReuseAddr, err = unix.GetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR)
	if err != nil {
		return seen, os.NewSyscallError("getsockopt SO_REUSEADDR", err)
	}
	fd, echo, err := ch7Served(addr)
	if err != nil {
		return seen, err
	}
	defer unix.Close(fd)
	seen.Echo = echo
	seen.TimeWaitsAfter, _, err = ch7TimeWaitsOn(addr, 0)
	return seen, err
}

// --8<-- [end:reuse-child]

// ch7Served connects to an echoing refserver, sends "ping" and returns what came back.
func ch7Served(addr netip.AddrPort) (int, string, error) {
	fd, err := lab.DialTo(addr)
	if err != nil {
		return -1, "", err
	}
	var calls evidence.Calls
	err = ch7Write(&calls, "client", fd, []byte("ping"))
	var got []byte
	if err == nil {
		got, err = ch7Read(&calls, "client", fd)
	}
	if err != nil {
		unix.Close(fd)
		return -1, "", err
	}
	return fd, string(got), nil
}

// ch7TimeWaitsOn lists the TIME_WAITs whose local end is addr (/proc/net/tcp), once there
// are at least want, and tells whether a listener is on addr.
func ch7TimeWaitsOn(addr netip.AddrPort, want int) ([]string, bool, error) {
	domain := sock.Family(addr)
	var tws []string
	var listening bool
	for range 1000 {
		tws, listening = nil, false
		err := procfs.EachTCPTimed(domain, func(r procfs.TCPTimed) {
			switch {
			case r.Local != addr:
			case r.State == procfs.TCPTimeWait:
				tws = append(tws, fmt.Sprintf("%s -> %s", r.Local, r.Remote))
			case r.State == procfs.TCPListen:
				listening = true
			}
		})
		if err != nil || len(tws) >= want {
			return tws, listening, err
		}
		time.Sleep(time.Millisecond)
	}
	return tws, listening, nil
}

// --8<-- [start:listener-resets-child]

// ch7ListenerResetChild makes refserver's listener, connects clients that each send a
// byte, and stops the server before it accepts any: Serve is never called.
var ch7ListenerResetChild = lab.RegisterChild("ch7.close.listener-resets", ch7ListenerReset)

func ch7ListenerReset(loopback string) (evidence.ListenerReset, error) {
	var seen evidence.ListenerReset
	narration := testkit.NewLines()
	at := netip.AddrPortFrom(netip.MustParseAddr(loopback), 0)
	srv, err := refserver.New(refserver.Config{Addr: at, Loops: 1, Handler: refserver.Echo{},
		Log: log.New(narration, "", 0)})
	if err != nil {
		return seen, err
	}
	seen.Listener = srv.Addr().String()
	capture, err := lab.StartCapture(srv.Addr().Port())
	if err != nil {
		return seen, err
	}
	defer capture.Close()
	var clients []int
	defer func() { lab.CloseAll(clients) }()
	calls := &seen.Calls
	for range 3 {
		fd, err := lab.DialTo(srv.Addr())
		if err != nil {
			return seen, err
		}
		clients = append(clients, fd)
		if err := ch7Write(calls, "client", fd, []byte("x")); err != nil {
			return seen, err
		}
	}
	q, err := ch4AwaitQueue(srv.Listeners()[0], uint32(len(clients)), lab.AcceptWithin)
	if err != nil {
		return seen, err
	}
	seen.Queued = q.Len
	for _, fd := range clients {
		local, err := sock.LocalAddr(fd)
		if err != nil {
			return seen, err
		}
		end := evidence.ResetClient{Client: local.String()}
		if end.Before, err = sock.TCPState(fd); err != nil {
			return seen, err
		}
		// The server's kernel acknowledges the byte at once, on lo.
		if end.Unacked, err = ch7Acked(fd); err != nil {
			return seen, err
		}
		seen.Clients = append(seen.Clients, end)
	}

	ctx, cancel := context.WithTimeout(context.Background(), lab.ReadWithin)
	defer cancel()
	t0 := time.Now()
	err = srv.Shutdown(ctx) // closes the listener: inet_csk_listen_stop aborts the queue
	calls.Add("server", "Shutdown", t0, fmt.Sprint(err))
	for i, fd := range clients {
		_, err := ch7Read(calls, "client", fd)
		seen.Clients[i].Read = sock.ErrnoName(err)
		if seen.Clients[i].After, err = sock.TCPState(fd); err != nil {
			return seen, err
		}
	}
	seen.Narration = narration.All()
	// Three handshakes, three bytes and their ACKs, three RSTs.
	seen.Packets, err = capture.ReadAll(3*3 + 3*2 + 3)
	return seen, err
}

// --8<-- [end:listener-resets-child]
