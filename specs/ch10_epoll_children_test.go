//go:build linux

package specs

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// ch10ScaleArg asks the scale child for Connections idle connections, their clients' ends
// passed to the holder at Holder, and epoll_wait and poll timed over the first n of them for
// each n of Counts.
type ch10ScaleArg struct {
	Holder      string `json:"holder"`
	Connections int    `json:"connections"`
	Counts      []int  `json:"counts"`
}

const (
	// ch10EventBuffer is the events buffer epoll_wait is given: room for more than one.
	ch10EventBuffer = 64
	// ch10Batch is how many clients' ends are passed to the holder at once.
	ch10Batch = 250
	// ch10TimeEach bounds the timed calls of one kind at one count, in time and in number.
	ch10TimeEach  = 25 * time.Millisecond
	ch10CallsEach = 20000
)

// --8<-- [start:scale-child]

// ch10ScaleChild opens arg.Connections connections on its lo, keeps their server ends and
// passes the clients' ends to the holder (another process: one process could not hold both
// ends of 10,000 connections under RLIMIT_NOFILE's hard limit of 20,000 and still have room),
// all but one, whose client sends a byte. Then it asks epoll_wait and poll the same question
// at each count: which of these is ready?
var ch10ScaleChild = lab.RegisterChild("ch10.epoll.scale", func(arg ch10ScaleArg) (
	evidence.EpollScale, error) {
	seen := evidence.EpollScale{Ready: rand.IntN(min(arg.Counts[0], arg.Connections))}
	var err error
	if seen.NoFile, seen.NoFileHard, err = sock.DescriptorLimit(); err != nil {
		return seen, err
	}
	// The holder keeps the clients' ends open until this sender hangs up, at the end.
	holder, err := lab.SendTo(arg.Holder)
	if err != nil {
		return seen, err
	}
	defer holder.Close()
	servers, readyClient, err := ch10Connections(arg, holder, &seen)
	defer func() { lab.CloseAll(append(servers, readyClient)) }()
	if err != nil {
		return seen, err
	}
	if seen.Descriptors, err = sock.OpenDescriptors(); err != nil {
		return seen, err
	}
	// The one ready connection: a byte from its client, in its server end's receive queue.
	seen.ReadyFD = servers[seen.Ready]
	if _, err := sock.Write(readyClient, []byte{1}); err != nil {
		return seen, fmt.Errorf("write: %w", err)
	}
	if err := sock.WaitFor(seen.ReadyFD, unix.POLLIN, lab.ReadWithin); err != nil {
		return seen, err
	}
	for i, fd := range servers {
		n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		if err != nil {
			return seen, os.NewSyscallError("ioctl SIOCINQ", err)
		}
		if i == seen.Ready {
			seen.ReadyUnread = n
		} else {
			seen.IdleUnread += n
		}
	}
	for _, n := range arg.Counts {
		r, err := ch10Round(servers[:n], seen.ReadyFD)
		if err != nil {
			return seen, err
		}
		seen.Rounds = append(seen.Rounds, r)
	}
	return seen, nil
})

// --8<-- [end:scale-child]

// ch10Connections connects and accepts arg.Connections times, ch10Batch at a time, and
// passes each batch's clients' ends to the holder, but for the ready one's.
func ch10Connections(arg ch10ScaleArg, holder *lab.Sender, seen *evidence.EpollScale) (
	servers []int, readyClient int, err error) {
	readyClient = -1
	start := time.Now()
	l, addr, err := lab.ListenOn(netip.MustParseAddrPort("127.0.0.1:0"), ch10Batch)
	if err != nil {
		return nil, -1, err
	}
	defer unix.Close(l)
	servers = make([]int, 0, arg.Connections)
	for len(servers) < arg.Connections {
		var clients []int
		for range min(ch10Batch, arg.Connections-len(servers)) {
			c, err := lab.DialTo(addr)
			if err != nil {
				return servers, readyClient, err
			}
			s, _, err := lab.AcceptOn(l, lab.AcceptWithin)
			if err != nil {
				unix.Close(c)
				return servers, readyClient, err
			}
			if len(servers) == seen.Ready {
				readyClient = c
			} else {
				clients = append(clients, c)
			}
			servers = append(servers, s)
		}
		err := holder.Send(clients)
		for _, c := range clients {
			unix.Close(c)
		}
		if err != nil {
			return servers, readyClient, err
		}
		seen.Passed += len(clients)
	}
	seen.Connections = len(servers)
	seen.BuildMS = float64(time.Since(start).Microseconds()) / 1e3
	return servers, readyClient, nil
}

// ch10Round asks epoll_wait and poll, once each with every entry they could write filled
// with a sentinel, then many times on the clock.
func ch10Round(fds []int, ready int) (evidence.ScaleRound, error) {
	r := evidence.ScaleRound{Registered: len(fds)}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return r, os.NewSyscallError("epoll_create1", err)
	}
	defer unix.Close(epfd)
	for _, fd := range fds {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return r, os.NewSyscallError("epoll_ctl", err)
		}
	}
	events := make([]unix.EpollEvent, ch10EventBuffer)
	for i := range events {
		events[i] = unix.EpollEvent{Events: ^uint32(0), Fd: -1}
	}
	if r.EpollReturned, err = ch10EpollWait(epfd, events); err != nil {
		return r, err
	}
	r.EpollFD = int(events[0].Fd)
	for _, ev := range events {
		if ev.Fd != -1 || ev.Events != ^uint32(0) {
			r.EpollWritten++
		}
	}
	r.EpollCalls, r.EpollNS, r.EpollOdd, err = ch10Time(func() (bool, error) {
		n, err := ch10EpollWait(epfd, events)
		return n == 1 && int(events[0].Fd) == ready, err
	})
	if err != nil {
		return r, err
	}

	pfds := make([]unix.PollFd, len(fds))
	for i, fd := range fds {
		pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN, Revents: -1}
	}
	if r.PollReturned, err = ch10Poll(pfds); err != nil {
		return r, err
	}
	for i, p := range pfds {
		if p.Revents != -1 {
			r.PollWritten++
		}
		if p.Revents != 0 && p.Revents != -1 {
			r.PollSet++
			r.PollSetAt = i
		}
	}
	r.PollCalls, r.PollNS, r.PollOdd, err = ch10Time(func() (bool, error) {
		n, err := ch10Poll(pfds)
		return n == 1, err
	})
	return r, err
}

// ch10EpollWait and ch10Poll ask without waiting (timeout 0), again after a signal.
func ch10EpollWait(epfd int, events []unix.EpollEvent) (int, error) {
	for range 100 {
		n, err := unix.EpollWait(epfd, events, 0)
		if err != unix.EINTR {
			return n, os.NewSyscallError("epoll_wait", err)
		}
	}
	return 0, errors.New("epoll_wait: EINTR 100 times")
}

func ch10Poll(pfds []unix.PollFd) (int, error) {
	for range 100 {
		n, err := unix.Poll(pfds, 0)
		if err != unix.EINTR {
			return n, os.NewSyscallError("poll", err)
		}
	}
	return 0, errors.New("poll: EINTR 100 times")
}

// ch10Time calls ask until ch10TimeEach has passed or ch10CallsEach calls were made, at
// least 10, and returns the calls, the time per call, and how many answered wrong.
func ch10Time(ask func() (bool, error)) (calls int, nsPerCall float64, odd int, err error) {
	start := time.Now()
	for calls < ch10CallsEach && (calls < 10 || time.Since(start) < ch10TimeEach) {
		ok, err := ask()
		if err != nil {
			return calls, 0, odd, err
		}
		if !ok {
			odd++
		}
		calls++
	}
	return calls, float64(time.Since(start).Nanoseconds()) / float64(calls), odd, nil
}

// ch10HerdArg asks the herd child for Waiters threads, each in epoll_wait on an epoll
// instance of its own that watches one shared listener, and Connections connections to it,
// once per entry of Exclusive (that flag on the listener's registration, or not).
type ch10HerdArg struct {
	Waiters     int    `json:"waiters"`
	Connections int    `json:"connections"`
	Exclusive   []bool `json:"exclusive"`
}

// --8<-- [start:herd-child]

// ch10HerdChild runs the herd once per registration asked: a listener, arg.Waiters threads
// each with its own epoll instance watching it, and arg.Connections connections made one at
// a time, each once every waiter is asleep.
var ch10HerdChild = lab.RegisterChild("ch10.epoll.herd", func(arg ch10HerdArg) (
	[]evidence.EpollHerd, error) {
	// A P for every waiter and to spare: a thread back from epoll_wait must not have to
	// sleep for one, a context switch that is not a wake-up.
	runtime.GOMAXPROCS(arg.Waiters + 4)
	var runs []evidence.EpollHerd
	for _, exclusive := range arg.Exclusive {
		seen, err := ch10Herd(arg, exclusive)
		runs = append(runs, seen)
		if err != nil {
			return runs, err
		}
	}
	return runs, nil
})

func ch10Herd(arg ch10HerdArg, exclusive bool) (evidence.EpollHerd, error) {
	seen := evidence.EpollHerd{Connections: arg.Connections, Registered: "EPOLLIN"}
	// As refserver's loops register a listener they share (loop.go, watchListener).
	events := uint32(unix.EPOLLIN)
	if exclusive {
		events |= unix.EPOLLEXCLUSIVE
		seen.Registered = "EPOLLIN|EPOLLEXCLUSIVE"
	}
	l, addr, err := lab.ListenOn(netip.MustParseAddrPort("127.0.0.1:0"), arg.Connections)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	seen.Listener = addr.String()
	stop, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return seen, os.NewSyscallError("eventfd", err)
	}
	defer unix.Close(stop)

	ws := make([]*ch10Thread, arg.Waiters)
	var accepted atomic.Int64
	var wg sync.WaitGroup
	started := make(chan error, arg.Waiters)
	for i := range ws {
		w := &ch10Thread{}
		ws[i] = w
		wg.Go(func() {
			w.wait(l, stop, events, &accepted, started)
		})
	}
	var startErr error
	for range ws {
		startErr = errors.Join(startErr, <-started)
	}
	err = startErr
	for i := 0; err == nil && i < arg.Connections; i++ {
		err = ch10Connect(ws, addr, &accepted, int64(i+1))
	}
	if err == nil {
		err = ch10Asleep(ws)
	}
	// The stop: an eventfd every epoll instance watches (without EPOLLEXCLUSIVE) wakes all.
	var one [8]byte
	one[0] = 1
	unix.Write(stop, one[:])
	wg.Wait()
	for _, w := range ws {
		seen.Waiters = append(seen.Waiters, w.seen)
		seen.Accepted += w.seen.Accepted
		seen.WokeUp += w.seen.WokeUp
		err = errors.Join(err, w.err)
	}
	return seen, err
}

// ch10Connect makes one connection once every waiter sleeps in epoll_wait, and returns once
// a waiter has accepted it and the others have had time to wake and sleep again.
func ch10Connect(ws []*ch10Thread, addr netip.AddrPort, accepted *atomic.Int64, want int64) error {
	if err := ch10Asleep(ws); err != nil {
		return err
	}
	c, err := lab.DialTo(addr)
	if err != nil {
		return err
	}
	defer unix.Close(c)
	deadline := time.Now().Add(lab.AcceptWithin)
	for accepted.Load() < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("connection %d: not accepted within %v", want, lab.AcceptWithin)
		}
		time.Sleep(50 * time.Microsecond)
	}
	time.Sleep(2 * time.Millisecond)
	return nil
}

// ch10Asleep waits, at most 5 s, until every waiter is inside epoll_wait and its thread
// sleeps (state S in /proc/self/task/TID/stat).
func ch10Asleep(ws []*ch10Thread) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		all := true
		for _, w := range ws {
			if !w.inWait.Load() || ch10ThreadState(int(w.tid.Load())) != 'S' {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the waiters did not all sleep in epoll_wait within 5s")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// --8<-- [end:herd-child]

// ch10Thread is one waiter: a goroutine locked to its OS thread.
type ch10Thread struct {
	tid    atomic.Int32
	inWait atomic.Bool
	seen   evidence.HerdWaiter
	err    error
}

// --8<-- [start:herd-waiter]

// wait is one waiter's loop, on a thread of its own: epoll_wait, then accept4 what it was
// told of, until the stop. Its voluntary context switches are read before and after each
// epoll_wait: each is a sleep in it, and each sleep ended with a wake-up.
func (w *ch10Thread) wait(l, stop int, events uint32, accepted *atomic.Int64,
	started chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	w.tid.Store(int32(unix.Gettid()))
	w.seen.TID = unix.Gettid()
	status, epfd, err := ch10WaiterSetUp(l, stop, events)
	started <- err
	if err != nil {
		w.err = err
		return
	}
	defer unix.Close(status)
	defer unix.Close(epfd)
	evs := make([]unix.EpollEvent, 4)
	for {
		before, err := ch10Voluntary(status)
		if err != nil {
			w.err = err
			return
		}
		w.inWait.Store(true)
		n, werr := unix.EpollWait(epfd, evs, int(lab.AcceptWithin.Milliseconds())*4)
		w.inWait.Store(false)
		after, err := ch10Voluntary(status)
		if err != nil {
			w.err = err
			return
		}
		slept := after - before
		w.seen.WokeUp += slept
		switch {
		case werr == unix.EINTR:
			continue
		case werr != nil:
			w.err = os.NewSyscallError("epoll_wait", werr)
			return
		case n == 0:
			w.err = errors.New("epoll_wait: no stop in time")
			return
		}
		for _, ev := range evs[:n] {
			if int(ev.Fd) == stop {
				if slept > 0 {
					w.seen.WokeUp-- // the stop's own wake-up
				}
				return
			}
			w.seen.Returned++
			fd, _, err := sock.Accept(l)
			switch {
			case err == nil:
				unix.Close(fd)
				w.seen.Accepted++
				accepted.Add(1)
			case errors.Is(err, unix.EAGAIN):
				w.seen.EAGAIN++
			default:
				w.err = err
				return
			}
		}
	}
}

// --8<-- [end:herd-waiter]

// ch10WaiterSetUp opens the waiter's /proc/thread-self/status (its own thread's, for good:
// the open file stays that thread's) and its epoll instance, which watches the listener with
// events and the stop eventfd.
func ch10WaiterSetUp(l, stop int, events uint32) (status, epfd int, err error) {
	status, err = unix.Open("/proc/thread-self/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, os.NewSyscallError("open /proc/thread-self/status", err)
	}
	if epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		unix.Close(status)
		return -1, -1, os.NewSyscallError("epoll_create1", err)
	}
	err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, l, &unix.EpollEvent{Events: events, Fd: int32(l)})
	if err == nil {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(stop)}
		err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, stop, &ev)
	}
	if err != nil {
		unix.Close(status)
		unix.Close(epfd)
		return -1, -1, os.NewSyscallError("epoll_ctl", err)
	}
	return status, epfd, nil
}

// ch10Voluntary reads voluntary_ctxt_switches from an open /proc/.../status: the times the
// thread gave up the CPU to sleep (nvcsw, counted by __schedule).
func ch10Voluntary(status int) (int, error) {
	var b [4096]byte
	n, err := unix.Pread(status, b[:], 0)
	if err != nil {
		return 0, os.NewSyscallError("pread /proc/thread-self/status", err)
	}
	const key = "\nvoluntary_ctxt_switches:"
	i := bytes.Index(b[:n], []byte(key))
	if i < 0 {
		return 0, errors.New("no voluntary_ctxt_switches in /proc/thread-self/status")
	}
	rest := b[i+len(key) : n]
	if j := bytes.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	return strconv.Atoi(string(bytes.TrimSpace(rest)))
}

// ch10ThreadState is the state letter of /proc/self/task/TID/stat: R running, S sleeping.
func ch10ThreadState(tid int) byte {
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		return '?'
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return '?'
	}
	return b[i+2]
}
