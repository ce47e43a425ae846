//go:build linux

package specs

import (
	"errors"
	"fmt"
	"os"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// ch10Script is the same for both triggers: bytes arrive, the reader waits three times,
// reads part, waits twice, more bytes arrive, it waits, reads to EAGAIN, and waits.
var ch10Script = []string{"send 100", "wait", "wait", "wait", "read 30", "wait", "wait",
	"send 50", "wait", "read to EAGAIN", "wait"}

// ch10Counts are the numbers of registered connections epoll_wait and poll are timed over.
var ch10Counts = []int{100, 1000, 10000}

// ch10Spare is the room each process of the scale proof needs beside its share of the
// connections: the runtime's, the listener's, a batch of clients' ends in flight.
const ch10Spare = ch10Batch + 100

// The herd: as claims.md observed it.
const ch10Waiters, ch10HerdConnections = 4, 50

var _ = Describe(Epoll.Title, Label("chapter:10"), func() {
	// --8<-- [start:epoll-level]
	It("reports a socket on every level-triggered epoll_wait while bytes are unread, until EAGAIN",
		Label("claim:epoll.level"), func() {
			seen := ch10Trigger(unix.EPOLLIN)
			lab.Record(evidence.EntryEpollTrigger, seen)
			lab.Cite(seen.Figures())

			// --8<-- [start:epoll-level-proof]
			for i, st := range seen.Steps {
				if st.Do != "wait" {
					continue
				}
				if st.Unread > 0 {
					// Level-triggered: ep_send_events puts the socket back on the ready list
					// after reporting it, and the next epoll_wait polls it again.
					Expect(st.Reported).To(Equal(1), "step %d, %d bytes unread", i+1, st.Unread)
				} else {
					// Read to EAGAIN: tcp_poll finds nothing, and the socket leaves the list.
					Expect(st.Reported).To(BeZero(), "step %d, nothing unread", i+1)
				}
			}
			reported := seen.Waits(func(s evidence.TriggerStep) bool { return s.Reported == 1 })
			Expect(reported).To(Equal(6), "waits that reported the socket")
			Expect(seen.Steps[len(seen.Steps)-1].Unread).To(BeZero(), "after the read to EAGAIN")
			// --8<-- [end:epoll-level-proof]
		})
	// --8<-- [end:epoll-level]

	// --8<-- [start:epoll-edge]
	It("reports a socket once per arrival with EPOLLET, though bytes remain unread",
		Label("claim:epoll.edge"), func() {
			seen := ch10Trigger(unix.EPOLLIN | unix.EPOLLET)
			lab.Record(evidence.EntryEpollTrigger, seen)
			lab.Cite(seen.Figures())

			// --8<-- [start:epoll-edge-proof]
			for i, st := range seen.Steps {
				if st.Do != "wait" {
					continue
				}
				if i > 0 && seen.Steps[i-1].Arrival {
					// Bytes came since the last wait: ep_poll_callback queued the socket.
					Expect(st.Reported).To(Equal(1), "step %d, right after an arrival", i+1)
				} else {
					// Nothing new: not reported, though FIONREAD says bytes wait. The wake-up
					// for them was the one already taken.
					Expect(st.Reported).To(BeZero(), "step %d, %d bytes unread", i+1, st.Unread)
				}
			}
			lost := seen.Waits(func(s evidence.TriggerStep) bool {
				return s.Unread > 0 && s.Reported == 0
			})
			Expect(lost).To(Equal(4), "waits that reported nothing while bytes were unread")
			// --8<-- [end:epoll-edge-proof]
		})
	// --8<-- [end:epoll-edge]

	// --8<-- [start:epoll-scale]
	It("finds the one ready connection of 10,000 with one epoll_wait; poll(2) is handed all 10,000",
		Label("claim:epoll.scale"), func() {
			// The clients' ends live in this process, the server ends in the sandbox child:
			// 20,000 descriptors would not fit one process under a hard limit of 20,000.
			n := ch10Counts[len(ch10Counts)-1]
			_, hard, err := sock.DescriptorLimit()
			Expect(err).NotTo(HaveOccurred())
			lab.Require(hard >= uint64(n+ch10Spare), fmt.Sprintf("%d connections need "+
				"RLIMIT_NOFILE's hard limit at %d or more in each process; it is %d",
				n, n+ch10Spare, hard))
			holder, err := lab.HoldDescriptors(time.Minute)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(holder.Close)
			arg := ch10ScaleArg{Holder: holder.Path, Connections: n, Counts: ch10Counts}
			seen := lab.RunInSandbox(ch10ScaleChild, arg, lab.SandboxOptions{Timeout: time.Minute})
			held, err := holder.Wait(10 * time.Second)
			Expect(err).NotTo(HaveOccurred())
			lab.Record(evidence.EntryEpollScale, seen)
			lab.Cite(seen.Figures(held))

			// --8<-- [start:epoll-scale-proof]
			Expect(seen.Connections).To(Equal(n))
			Expect(held).To(Equal(seen.Passed), "clients' ends the holder kept open at once")
			Expect(seen.IdleUnread).To(BeZero(), "FIONREAD over the idle connections")
			Expect(seen.ReadyUnread).To(Equal(1), "FIONREAD on the ready one")
			for _, r := range seen.Rounds {
				// epoll_wait hands back the ready list alone: one event, the ready socket's,
				// one entry of the %d-entry buffer written.
				Expect(r.EpollReturned).To(Equal(1), "epoll_wait over %d", r.Registered)
				Expect(r.EpollFD).To(Equal(seen.ReadyFD), "epoll_wait over %d", r.Registered)
				Expect(r.EpollWritten).To(Equal(1), "events written, of %d", ch10EventBuffer)
				// poll(2) is handed every descriptor, and the kernel writes every revents back.
				Expect(r.PollReturned).To(Equal(1), "poll over %d", r.Registered)
				Expect(r.PollWritten).To(Equal(r.Registered), "revents written back")
				Expect(r.PollSet).To(Equal(1), "revents set, of %d", r.Registered)
				Expect(r.PollSetAt).To(Equal(seen.Ready), "the entry poll set")
				Expect(r.EpollOdd+r.PollOdd).To(BeZero(), "timed calls with another answer")
			}
			// --8<-- [end:epoll-scale-proof]
		})
	// --8<-- [end:epoll-scale]

	// --8<-- [start:epoll-exclusive]
	It("wakes every waiter on a shared listener per connection; with EPOLLEXCLUSIVE, one or more",
		Label("claim:epoll.exclusive"), func() {
			arg := ch10HerdArg{Waiters: ch10Waiters, Connections: ch10HerdConnections,
				Exclusive: []bool{false, true}}
			runs := lab.RunInSandbox(ch10HerdChild, arg, lab.SandboxOptions{})
			lab.Record(evidence.EntryEpollHerd, runs)
			Expect(runs).To(HaveLen(2))
			herd, exclusive := runs[0], runs[1]
			lab.Cite(ch10HerdFigures(herd, exclusive))

			// --8<-- [start:epoll-exclusive-proof]
			for _, run := range runs {
				// Every connection was accepted, once.
				Expect(run.Accepted).To(Equal(run.Connections), "registered %s", run.Registered)
			}
			// Without EPOLLEXCLUSIVE every epoll instance on the listener's wait queue is
			// woken (ep_poll_callback, for each): every waiter, for every connection...
			for _, w := range herd.Waiters {
				Expect(w.WokeUp).To(BeNumerically(">=", herd.Connections), "waiter %d", w.TID)
			}
			// ...though most find the connection gone, sleep again, and epoll_wait never
			// returns for them: wake-ups, not returns, are the herd.
			Expect(herd.WokeUp).To(BeNumerically(">", herd.TotalReturned()))
			// With it, "one or more" waiters are woken per connection.
			Expect(exclusive.WokeUp).To(BeNumerically(">=", exclusive.Connections))
			// --8<-- [end:epoll-exclusive-proof]
		})
	// --8<-- [end:epoll-exclusive]
})

// --8<-- [start:trigger]

// ch10Trigger runs ch10Script on the server end of a loopback connection, watched by an
// epoll instance with events: a send is the client's, a wait is epoll_wait with timeout 0
// (what is ready now), and FIONREAD is read after every step.
func ch10Trigger(events uint32) evidence.EpollTrigger {
	GinkgoHelper()
	l := lab.Listen(lab.IPv4.At(0), 1)
	client := lab.Dial(l.Addr)
	server := l.Accept()
	seen := evidence.EpollTrigger{Registered: ch10Events(events), Conn: server.Tuple().String()}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(unix.Close, epfd)
	ev := unix.EpollEvent{Events: events, Fd: int32(server.FD())}
	Expect(unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, server.FD(), &ev)).To(Succeed())

	for _, do := range ch10Script {
		st := evidence.TriggerStep{Do: do}
		var n int
		switch {
		case do == "wait":
			st.Reported, st.Events = ch10Wait(epfd, server.FD())
		case do == "read to EAGAIN":
			st.Read = ch10Read(server.FD(), 1<<16)
		case ch10Scan(do, "send %d", &n):
			sent := ch10Unread(server.FD())
			client.Send(make([]byte, n))
			st.Arrival = ch10AwaitUnread(server.FD(), sent+n)
		case ch10Scan(do, "read %d", &n):
			st.Read = ch10ReadOnce(server.FD(), n)
		}
		st.Unread = ch10Unread(server.FD())
		seen.Steps = append(seen.Steps, st)
	}
	return seen
}

// --8<-- [end:trigger]

func ch10Scan(s, format string, n *int) bool {
	_, err := fmt.Sscanf(s, format, n)
	return err == nil
}

func ch10Wait(epfd, fd int) (int, string) {
	GinkgoHelper()
	evs := make([]unix.EpollEvent, 4)
	for range 100 {
		n, err := unix.EpollWait(epfd, evs, 0)
		if err == unix.EINTR {
			continue
		}
		Expect(err).NotTo(HaveOccurred(), "epoll_wait")
		if n == 0 {
			return 0, ""
		}
		Expect(evs[0].Fd).To(BeEquivalentTo(fd))
		return n, ch10Events(evs[0].Events)
	}
	Fail("epoll_wait: EINTR 100 times")
	return 0, ""
}

// ch10Unread is FIONREAD (SIOCINQ): bytes in the socket's receive queue, not yet read.
func ch10Unread(fd int) int {
	GinkgoHelper()
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	Expect(os.NewSyscallError("ioctl SIOCINQ", err)).NotTo(HaveOccurred())
	return n
}

// ch10AwaitUnread waits until want bytes are unread: on lo the segment is delivered in the
// sender's own softirq, but not necessarily before send returns.
func ch10AwaitUnread(fd, want int) bool {
	GinkgoHelper()
	deadline := time.Now().Add(lab.ReadWithin)
	for attempt := 0; ch10Unread(fd) < want; attempt++ {
		if attempt > 50000 || time.Now().After(deadline) {
			Fail(fmt.Sprintf("%d bytes unread after %v, want %d",
				ch10Unread(fd), lab.ReadWithin, want))
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

func ch10ReadOnce(fd, n int) int {
	GinkgoHelper()
	got, err := unix.Read(fd, make([]byte, n))
	Expect(os.NewSyscallError("read", err)).NotTo(HaveOccurred())
	return got
}

// ch10Read reads until EAGAIN, at most 100 reads of size.
func ch10Read(fd, size int) int {
	GinkgoHelper()
	total := 0
	buf := make([]byte, size)
	for range 100 {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return total
		}
		Expect(os.NewSyscallError("read", err)).NotTo(HaveOccurred())
		Expect(n).NotTo(BeZero(), "end of stream")
		total += n
	}
	Fail("no EAGAIN in 100 reads")
	return total
}

func ch10Events(ev uint32) string {
	s := ""
	for _, f := range []struct {
		bit  uint32
		name string
	}{{unix.EPOLLIN, "EPOLLIN"}, {unix.EPOLLOUT, "EPOLLOUT"}, {unix.EPOLLRDHUP, "EPOLLRDHUP"},
		{unix.EPOLLHUP, "EPOLLHUP"}, {unix.EPOLLERR, "EPOLLERR"}, {unix.EPOLLET, "EPOLLET"},
		{unix.EPOLLEXCLUSIVE, "EPOLLEXCLUSIVE"}} {
		if ev&f.bit != 0 {
			if s != "" {
				s += "|"
			}
			s += f.name
		}
	}
	return s
}

// ch10HerdFigures are what the chapter cites of the two runs, without and with
// EPOLLEXCLUSIVE: each waiter's wake-ups and accepts, and the totals.
func ch10HerdFigures(herd, exclusive evidence.EpollHerd) evidence.Figures {
	per := func(h evidence.EpollHerd) (woke, accepted []int) {
		for _, w := range h.Waiters {
			woke, accepted = append(woke, w.WokeUp), append(accepted, w.Accepted)
		}
		return woke, accepted
	}
	hw, ha := per(herd)
	ew, ea := per(exclusive)
	return evidence.Figures{"waiters": len(herd.Waiters), "connections": herd.Connections,
		"herd_woke": hw, "herd_accepted": ha, "herd_total": herd.WokeUp,
		"herd_returned":  herd.TotalReturned(),
		"exclusive_woke": ew, "exclusive_accepted": ea, "exclusive_total": exclusive.WokeUp,
		"exclusive_returned": exclusive.TotalReturned()}
}
