//go:build linux

package specs

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// The sandbox children of chapter 3. Each runs in a process of its own, in a network
// namespace of its own (lab.RegisterChild), outside Ginkgo: it reports what the kernel
// answered in its result, and the spec in ch03_limits_test.go asserts.

const (
	// ch3NarrowRange is net.ipv4.ip_local_port_range in the children that exhaust it: ten
	// ports, so that ten connect()s use it up.
	ch3NarrowRange = "40000 40009"
	// ch3ServerPort is where those children listen: outside the narrowed range, so that the
	// listener does not hold one of its ports.
	ch3ServerPort = 20000
	// ch3NoFile is RLIMIT_NOFILE in limit.fd's child: room for the runtime's own
	// descriptors, a listener, a few dozen clients and some of their accepted ends.
	ch3NoFile = 48
)

// --8<-- [start:limit-connect-until-refused]

// ch3Source is where a batch's sockets start from: unbound, when Addr is not valid, so that
// connect() chooses the address and the port; or bound to Addr:0 first, with the port chosen
// by bind(2), or by connect(2) when NoPort sets IP_BIND_ADDRESS_NO_PORT.
type ch3Source struct {
	Addr   netip.Addr
	NoPort bool
}

// ch3ConnectUntilRefused connects new sockets from `from` to `to` until a bind or connect
// fails, at most limit times, keeping every connection open (the caller closes fds).
func ch3ConnectUntilRefused(name string, from ch3Source, to netip.AddrPort, limit int,
	fds *[]int) (evidence.PortBatch, error) {
	b := evidence.PortBatch{Batch: name, PortBy: "connect", To: to.String(),
		Ports: []uint16{}, Tuples: []string{}}
	if from.Addr.IsValid() {
		b.From = netip.AddrPortFrom(from.Addr, 0).String()
		if !from.NoPort {
			b.PortBy = "bind"
		}
	}
	for range limit {
		fd, err := sock.Socket(sock.Family(to))
		if err != nil {
			return b, err
		}
		*fds = append(*fds, fd)
		if from.Addr.IsValid() {
			// bind(2) to port 0 picks the port now, before the destination is known
			// (inet_csk_get_port), and takes one that no other socket holds on this
			// address, whatever that socket's peer: EADDRINUSE when none is left.
			// IP_BIND_ADDRESS_NO_PORT makes bind fix the address alone and leaves the
			// port to connect(2), which picks it per 4-tuple (__inet_hash_connect), as for
			// an unbound socket.
			if from.NoPort {
				err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				if err != nil {
					return b, os.NewSyscallError("setsockopt IP_BIND_ADDRESS_NO_PORT", err)
				}
			}
			if err := sock.Bind(fd, netip.AddrPortFrom(from.Addr, 0)); err != nil {
				b.Refused = lab.Refused("bind", err,
					netip.AddrPort{}, netip.AddrPortFrom(from.Addr, 0))
				errors.As(err, &b.Errno)
				return b, nil
			}
		}
		if err := sock.Connect(fd, to, lab.ConnectWithin); err != nil {
			local, _ := sock.LocalAddr(fd) // left out of the evidence when it fails
			b.Refused = lab.Refused("connect", err, local, to)
			errors.As(err, &b.Errno)
			return b, nil
		}
		t, err := sock.TupleOf(fd)
		if err != nil {
			return b, err
		}
		st, err := sock.TCPState(fd)
		if err != nil {
			return b, err
		}
		b.Ports = append(b.Ports, t.Local.Port())
		b.Tuples = append(b.Tuples, t.String())
		if st == "ESTABLISHED" {
			b.Established++
		}
	}
	// Never refused within limit: the parent sees more ports than the range and no errno.
	return b, nil
}

// --8<-- [end:limit-connect-until-refused]

// ch3Exhaust bounds a batch: the range and a few more, so that a kernel that handed out
// more ports than its range would show it rather than stop the loop.
func ch3Exhaust(r evidence.PortRange) int { return min(r.Size+8, 1<<12) }

// --8<-- [start:limit-per-destination-child]

// ch3DefaultRangeChild reads the ephemeral range of a network namespace nobody has tuned:
// the kernel's own default.
var ch3DefaultRangeChild = lab.RegisterChild("ch3.limit.per-destination.default",
	func(struct{}) (evidence.PortRange, error) { return lab.ReadPortRange() })

type ch3FillArg struct {
	Server netip.AddrPort // where the listener binds, outside the narrowed range
}

// ch3FillSeen is what the per-destination child hands back; the spec records both parts.
type ch3FillSeen struct {
	Range evidence.PortRange // as the child's kernel reads it back
	Batch evidence.PortBatch
}

// ch3FillChild connects to one listener until the kernel has no source port left for that
// destination.
var ch3FillChild = lab.RegisterChild("ch3.limit.per-destination", ch3Fill)

func ch3Fill(arg ch3FillArg) (ch3FillSeen, error) {
	var seen ch3FillSeen
	var err error
	if seen.Range, err = lab.ReadPortRange(); err != nil {
		return seen, err
	}
	l, addr, err := lab.ListenOn(arg.Server, 64)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	var fds []int
	defer func() { lab.CloseAll(fds) }()
	// The handshakes complete without accept(): the kernel queues them (backlog 64).
	seen.Batch, err = ch3ConnectUntilRefused("to one server port", ch3Source{}, addr,
		ch3Exhaust(seen.Range), &fds)
	return seen, err
}

// --8<-- [end:limit-per-destination-child]

// --8<-- [start:limit-multiply-child]

// ch3MultiplySeen is what the multiply child hands back: the spec records its batches, in
// the order they ran, as one port_batches entry, and asserts on each by its place here.
type ch3MultiplySeen struct {
	Range evidence.PortRange
	// Batches go to the first destination, a second port, a second server address, and
	// from a second client address; Again to the first destination once more, afterwards.
	Batches []evidence.PortBatch
	Again   evidence.PortBatch
	// Bound are the batches whose sockets bind a client address first, once its ports are
	// spent toward the first destination: toward another destination with bind choosing the
	// port, then with IP_BIND_ADDRESS_NO_PORT; and from a third address with bind choosing.
	Bound []evidence.PortBatch
}

// ch3MultiplyChild exhausts the range toward one destination, then spends it again toward
// three more 4-tuples, each changing one element.
var ch3MultiplyChild = lab.RegisterChild("ch3.limit.multiply", ch3Multiply)

func ch3Multiply(struct{}) (ch3MultiplySeen, error) {
	var seen ch3MultiplySeen
	var err error
	if seen.Range, err = lab.ReadPortRange(); err != nil {
		return seen, err
	}
	one := netip.MustParseAddr("127.0.0.1")
	// 127.0.0.2 and .3 need no configuring: bringing lo up gave it 127.0.0.1/8, and the
	// kernel's local route answers for the whole block.
	two := netip.MustParseAddr("127.0.0.2")
	three := netip.MustParseAddr("127.0.0.3")
	var listeners, fds []int
	defer func() { lab.CloseAll(fds); lab.CloseAll(listeners) }()
	listen := func(at netip.AddrPort) (netip.AddrPort, error) {
		l, addr, err := lab.ListenOn(at, 64)
		if err == nil {
			listeners = append(listeners, l)
		}
		return addr, err
	}
	first, err := listen(netip.AddrPortFrom(one, ch3ServerPort))
	if err != nil {
		return seen, err
	}
	otherPort, err := listen(netip.AddrPortFrom(one, ch3ServerPort+1))
	if err != nil {
		return seen, err
	}
	otherAddr, err := listen(netip.AddrPortFrom(two, ch3ServerPort))
	if err != nil {
		return seen, err
	}
	limit := ch3Exhaust(seen.Range)
	type batch struct {
		name string
		from ch3Source
		to   netip.AddrPort
	}
	run := func(bs []batch) ([]evidence.PortBatch, error) {
		var out []evidence.PortBatch
		for _, b := range bs {
			got, err := ch3ConnectUntilRefused(b.name, b.from, b.to, limit, &fds)
			if err != nil {
				return out, err
			}
			out = append(out, got)
		}
		return out, nil
	}
	if seen.Batches, err = run([]batch{
		{"to the first server port", ch3Source{}, first},
		{"to a second server port", ch3Source{}, otherPort},
		// Unbound, so the source address is the route's: 127.0.0.1 for all of 127/8.
		{"to a second server address", ch3Source{}, otherAddr},
		{"from a second client address", ch3Source{Addr: two, NoPort: true}, first},
	}); err != nil {
		return seen, err
	}
	seen.Again, err = ch3ConnectUntilRefused("to the first server port again", ch3Source{},
		first, limit, &fds)
	if err != nil {
		return seen, err
	}
	// Last, because while a socket that bind(2) gave a port holds it, every connect() that
	// picks its own skips that port (__inet_hash_connect), whatever the address. Each name
	// ends with the call that chose the source port.
	seen.Bound, err = run([]batch{
		{"second address → second port, bind", ch3Source{Addr: two}, otherPort},
		{"second address → second port, connect", ch3Source{Addr: two, NoPort: true}, otherPort},
		{"third address → first port, bind", ch3Source{Addr: three}, first},
	})
	return seen, err
}

// --8<-- [end:limit-multiply-child]

// --8<-- [start:limit-fd-child]

type ch3FDArg struct {
	Listen netip.AddrPort // the listener's address; port 0, the kernel chooses
}

// ch3DescriptorsChild connects clients to its own listener first, then accepts with
// sock.Accept until the kernel refuses: clients and server share one RLIMIT_NOFILE.
var ch3DescriptorsChild = lab.RegisterChild("ch3.limit.fd", ch3Descriptors)

func ch3Descriptors(arg ch3FDArg) (evidence.DescriptorsSeen, error) {
	var seen evidence.DescriptorsSeen
	var err error
	if seen.Soft, seen.Hard, err = sock.DescriptorLimit(); err != nil {
		return seen, err
	}
	if seen.Range, err = lab.ReadPortRange(); err != nil {
		return seen, err
	}
	l, addr, err := lab.ListenOn(arg.Listen, 128)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	seen.Listener = addr.String()
	var fds []int
	defer func() { lab.CloseAll(fds) }()
	// EMFILE means no free number below the soft limit (alloc_fd): only the descriptors
	// below it count. One numbered above it was inherited, left open without close-on-exec
	// by whatever started go test, and is listed apart.
	limit := int(seen.Soft)
	if seen.OpenAtStart, err = lab.DescriptorsBelow(limit); err != nil {
		return seen, err
	}
	open, err := lab.OpenDescriptorNumbers()
	if err != nil {
		return seen, err
	}
	seen.Above = []evidence.OpenDescriptor{}
	for _, fd := range open {
		if fd >= limit {
			target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
			if err != nil {
				return seen, err
			}
			seen.Above = append(seen.Above, evidence.OpenDescriptor{FD: fd, Target: target})
		}
	}

	// Two thirds of the free descriptors go to clients, the rest is left for accept4: more
	// clients than that, so that some are still queued when the descriptors run out.
	free := limit - seen.OpenAtStart
	ports := map[uint16]bool{addr.Port(): true}
	for range free * 2 / 3 {
		c, err := lab.DialTo(addr)
		if err != nil {
			return seen, err
		}
		fds = append(fds, c)
		local, err := sock.LocalAddr(c)
		if err != nil {
			return seen, err
		}
		ports[local.Port()] = true
		seen.Clients++
	}
	seen.PortsUsed = len(ports)
	// connect() returned on the client's side of each handshake; the server's side may
	// still be finishing the last one. Wait, bounded, for the queue to hold every client.
	deadline := time.Now().Add(lab.AcceptWithin)
	for attempt := 0; attempt < 5000; attempt++ {
		q, err := sock.AcceptQueueOf(l)
		if err != nil {
			return seen, err
		}
		seen.QueueBefore = evidence.AcceptQueue(q)
		if int(seen.QueueBefore.Len) >= seen.Clients || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}

	for range seen.Clients + 1 {
		before, berr := lab.DescriptorsBelow(limit)
		fd, _, err := sock.Accept(l)
		if err != nil {
			seen.Refused = lab.Refused("accept4", err, addr, netip.AddrPort{})
			errors.As(err, &seen.Errno)
			break
		}
		fds = append(fds, fd)
		seen.Accepted++
		// Reading /proc/self/fd takes a descriptor of its own: after the accept4 that took
		// the last free number, the count itself fails with EMFILE, and is left out.
		after, aerr := lab.DescriptorsBelow(limit)
		if berr == nil && aerr == nil {
			seen.Steps = append(seen.Steps, evidence.DescriptorStep{Before: before, After: after})
		}
	}
	// Every number below the soft limit in use: fcntl(F_GETFD) answers EBADF for a free one.
	seen.AllOpen = true
	for fd := range limit {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			seen.AllOpen = false
		}
	}
	// getsockopt on the listener needs no new descriptor.
	q, err := sock.AcceptQueueOf(l)
	seen.QueueAtRefusal = evidence.AcceptQueue(q)
	return seen, err
}

// --8<-- [end:limit-fd-child]

// --8<-- [start:limit-fd-config-child]

// Each setrlimit the child makes is named in evidence.SetrlimitSeen.Call, so that the spec
// finds each by what it tried.
const (
	ch3CallLower         = "lower the soft limit"
	ch3CallRaise         = "raise the soft limit back to the hard limit"
	ch3CallSoftAboveHard = "soft limit above the hard limit"
	ch3CallHardDown      = "lower the hard limit by one"
	ch3CallHardBack      = "raise the hard limit back"
)

// ch3Setrlimit calls setrlimit(RLIMIT_NOFILE) and reads getrlimit back, whatever the answer.
func ch3Setrlimit(call string, soft, hard uint64) (evidence.SetrlimitSeen, error) {
	s := evidence.SetrlimitSeen{Call: call, Soft: soft, Hard: hard}
	if err := lab.SetDescriptorLimit(soft, hard); err != nil {
		errors.As(err, &s.Errno)
		s.Name, s.Error = sock.ErrnoName(err), err.Error()
	}
	var err error
	s.After.Soft, s.After.Hard, err = sock.DescriptorLimit()
	return s, err
}

// ch3RaiseHard, on a thread of its own, lowers the hard limit by one when lower is set,
// then asks for `hard` again. A capability belongs to a thread: with drop, the thread first
// takes CAP_SYS_RESOURCE out of its effective set (lowering one's effective set needs no
// privilege), so that the proof shows what an ordinary process gets even where the process
// holds it. The goroutine ends locked, so the runtime discards the thread with its set.
func ch3RaiseHard(thread string, drop, lower bool, hard uint64) (evidence.HardLimitSeen, error) {
	seen := evidence.HardLimitSeen{Thread: thread}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- func() error {
			if drop {
				hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
				var caps [2]unix.CapUserData
				if err := unix.Capget(&hdr, &caps[0]); err != nil {
					return os.NewSyscallError("capget", err)
				}
				caps[0].Effective &^= 1 << unix.CAP_SYS_RESOURCE
				if err := unix.Capset(&hdr, &caps[0]); err != nil {
					return os.NewSyscallError("capset", err)
				}
			}
			var err error
			if seen.CapEff, seen.CapResource, err = ch3CapEff(); err != nil {
				return err
			}
			if seen.InitialUserNS, err = ch3InInitialUserNS(); err != nil {
				return err
			}
			nrOpen, err := lab.ReadSysctlInt("fs.nr_open")
			if err != nil {
				return err
			}
			seen.NrOpen = uint64(nrOpen)
			soft, _, err := sock.DescriptorLimit()
			if err != nil {
				return err
			}
			if lower {
				s, err := ch3Setrlimit(ch3CallHardDown, min(soft, hard-1), hard-1)
				if err != nil {
					return err
				}
				seen.Calls = append(seen.Calls, s)
			}
			// Raising the hard limit takes CAP_SYS_RESOURCE in the initial user namespace
			// (capable(), in do_prlimit, kernel/sys.c): EPERM without it.
			s, err := ch3Setrlimit(ch3CallHardBack, min(soft, hard-1), hard)
			seen.Calls = append(seen.Calls, s)
			return err
		}()
	}()
	return seen, <-done
}

// ch3CapEff reads the calling thread's effective capabilities from /proc/thread-self/status
// ("CapEff:\t000001fffeffffff"), and whether CAP_SYS_RESOURCE is among them.
func ch3CapEff() (string, bool, error) {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return "", false, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			v = strings.TrimSpace(v)
			bits, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return v, false, fmt.Errorf("CapEff %q: %w", v, err)
			}
			return v, bits&(1<<unix.CAP_SYS_RESOURCE) != 0, nil
		}
	}
	return "", false, errors.New("/proc/thread-self/status: no CapEff line")
}

// ch3GoStartChild reports RLIMIT_NOFILE as it finds it: nothing ran before it but the Go
// runtime's start-up and the sandbox's setup, which leaves the limit alone without NoFile.
var ch3GoStartChild = lab.RegisterChild("ch3.limit.fd-config.go-start",
	func(struct{}) (evidence.Rlimit, error) {
		var l evidence.Rlimit
		var err error
		l.Soft, l.Hard, err = sock.DescriptorLimit()
		return l, err
	})

// ch3UserNSChild lowers its hard limit and raises it back in a user namespace of its own,
// where it is root with every capability, CAP_SYS_RESOURCE among them.
var ch3UserNSChild = lab.RegisterChild("ch3.limit.fd-config.userns",
	func(struct{}) (evidence.HardLimitSeen, error) {
		_, hard, err := sock.DescriptorLimit()
		if err != nil {
			return evidence.HardLimitSeen{}, err
		}
		return ch3RaiseHard("root of a user namespace", false, true, hard)
	})

// ch3RlimitChild moves its own RLIMIT_NOFILE, which no other process shares.
var ch3RlimitChild = lab.RegisterChild("ch3.limit.fd-config", ch3Rlimit)

func ch3Rlimit(struct{}) (evidence.RlimitSeen, error) {
	var seen evidence.RlimitSeen
	var err error
	if seen.Start.Soft, seen.Start.Hard, err = sock.DescriptorLimit(); err != nil {
		return seen, err
	}
	hard := seen.Start.Hard
	// setrlimit needs no privilege to lower the soft limit, nor to raise it again up to the
	// hard limit: the hard limit is the ceiling an unprivileged process moves under.
	for _, c := range []struct {
		call       string
		soft, hard uint64
	}{
		{ch3CallLower, 64, hard},
		{ch3CallRaise, hard, hard},
		// do_prlimit checks soft <= hard before anything else: EINVAL.
		{ch3CallSoftAboveHard, hard + 1, hard},
	} {
		s, err := ch3Setrlimit(c.call, c.soft, c.hard)
		if err != nil {
			return seen, err
		}
		seen.Calls = append(seen.Calls, s)
	}

	// The Go runtime at start-up (syscall/rlimit.go) raises a soft limit below hard-1 to
	// hard-1, and leaves one at hard-1 or hard alone. A program this child starts gets its
	// limit across execve: once setrlimit has been called, os/exec no longer restores the
	// limit the process started with. Handed a low soft limit, then the hard one:
	for _, soft := range []uint64{min(1024, hard/2), hard} {
		if err := lab.SetDescriptorLimit(soft, hard); err != nil {
			return seen, err
		}
		var handed evidence.Rlimit
		if handed.Soft, handed.Hard, err = sock.DescriptorLimit(); err != nil {
			return seen, err
		}
		at, err := ch3GoStartChild.Run(struct{}{}, lab.SandboxOptions{Timeout: 20 * time.Second})
		if err != nil {
			return seen, fmt.Errorf("the Go program handed soft limit %d: %w", soft, err)
		}
		seen.GoStart = append(seen.GoStart, evidence.GoStartSeen{Handed: handed, AtStart: at})
	}

	// A user namespace's root, started while the hard limit is still the one this child
	// began with. Child.Run, not lab.RunInSandbox: this is a child, with no spec to stop, and
	// a machine that refuses user namespaces is evidence here (UserNSRefused), not a skip.
	userNS, err := ch3UserNSChild.Run(struct{}{},
		lab.SandboxOptions{UserNS: true, Timeout: 20 * time.Second})
	switch {
	case errors.Is(err, lab.ErrNoSandbox):
		seen.UserNSRefused = err.Error()
	case err != nil:
		return seen, err
	default:
		seen.UserNS = &userNS
	}

	// The hard limit last: once lowered, it stays lowered where nothing may raise it.
	// do_prlimit answers EPERM for a hard limit above fs.nr_open before it looks at any
	// capability, so the limit is lowered first and asked back: no higher than it was.
	if seen.Dropped, err = ch3RaiseHard("without CAP_SYS_RESOURCE", true, true, hard); err != nil {
		return seen, err
	}
	seen.Kept, err = ch3RaiseHard("with the process's capabilities", false, false, hard)
	if err != nil {
		return seen, err
	}
	return seen, nil
}

// ch3InInitialUserNS tells whether this process's user namespace is the initial one, whose
// uid_map maps all of 0-4294967294 to itself.
func ch3InInitialUserNS() (bool, error) {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false, err
	}
	return strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295", nil
}

// --8<-- [end:limit-fd-config-child]
