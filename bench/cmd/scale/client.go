package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A client process opens its connections with four system calls each, from a few OS
// threads: socket(2), setsockopt(IP_BIND_ADDRESS_NO_PORT), bind(2), connect(2). Go's
// net.Dialer spent three times as many (a non-blocking connect, then epoll_ctl,
// getsockopt(SO_ERROR), getsockname, getpeername, TCP_NODELAY and four keepalive
// setsockopts), a netpoller registration, a deadline timer and a goroutine park and wake-up
// per connection: most of the clients' CPU, and none of it what the run is about.
//
// The sockets stay blocking. On loopback a blocking connect(2) completes within the call:
// the SYN, the server's SYN-ACK and the final ACK all go through the loopback device's
// softirq on this thread, so there is nothing to wait for and no event to register. A lost
// SYN (a full accept queue) would make connect wait for a retransmission; the driver sets
// net.ipv4.tcp_syn_retries in the namespace so that such a connect gives up within seconds.
//
// The four are made with unix.RawSyscall, which does not tell the Go scheduler that the
// thread is in a system call. A connect takes some 20 µs here, the scheduler's monitor
// (sysmon) takes the processor (P) from a thread in a system call after 20 µs, and handing
// it to another thread and back cost about a sixth of the clients' CPU (futex wake-ups,
// sysmon's own polling). What RawSyscall gives up: while a connect waits for a lost SYN,
// its thread keeps its P and a garbage collection could not stop the world; nothing here
// allocates per connection, so none starts while the connections open. Each worker keeps a
// P all along, so GOMAXPROCS is one more than the workers: the progress report gets one.
const (
	clientTimeout = 60 * time.Second // the most one client spends opening, or echoing
	attempts      = 3                // connects tried per connection before it counts as failed
	echoChunk     = 256              // connections a worker writes to before it reads their echoes
)

// runClient is one client process: n connections from its source addresses to dst, opened
// by threads OS threads, then held. On "echo" from stdin it sends a byte on every
// connection and reads it back; when stdin closes it closes them all and exits.
func runClient(dst netip.AddrPort, srcList string, n, threads int) int {
	var srcs []netip.Addr
	for s := range strings.SplitSeq(srcList, ",") {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			fmt.Printf("error: -src %q\n", s)
			return 2
		}
		srcs = append(srcs, a)
	}
	if n < 1 || threads < 1 {
		fmt.Printf("error: -n %d -threads %d\n", n, threads)
		return 2
	}
	runtime.GOMAXPROCS(threads + 1)
	fds := make([]int32, n)
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() { reportProgress(&ok, stop) })
	open(fds, srcs, dst, threads, &ok, &failed)
	close(stop)
	progress.Wait()
	fmt.Printf("done %d %d\n", ok.Load(), failed.Load())

	// Commands from the driver, at most a few: the run sends one "echo", then closes stdin.
	in := bufio.NewScanner(os.Stdin)
	for range 16 {
		if !in.Scan() {
			break
		}
		if in.Text() == "echo" {
			okE, failE := echo(fds, threads)
			fmt.Printf("echoed %d %d\n", okE, failE)
		}
	}
	for _, fd := range fds {
		if fd > 0 {
			unix.Close(int(fd))
		}
	}
	return 0
}

// reportProgress prints the count of connections open every 100 ms while it changes, until
// stop closes (or clientTimeout has passed: a bound of its own).
func reportProgress(ok *atomic.Int64, stop <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last int64 = -1
	for range clientTimeout / (100 * time.Millisecond) {
		select {
		case <-stop:
			return
		case <-tick.C:
			if v := ok.Load(); v != last {
				fmt.Printf("progress %d\n", v)
				last = v
			}
		}
	}
}

// open fills fds with connections, the i-th from srcs[i%len(srcs)], shared among threads
// workers by an atomic counter, and counts them in ok as they open. A connection that fails
// attempts times is left 0 (stdin's number, never a socket here) and counted in failed; so
// is every one still unopened at clientTimeout.
func open(fds []int32, srcs []netip.Addr, dst netip.AddrPort, threads int, ok, failed *atomic.Int64) {
	var next atomic.Int64
	var firstErr sync.Once
	deadline := time.Now().Add(clientTimeout)
	// The addresses as the kernel reads them, built once: the calls only read them.
	to := rawAddr(dst)
	from := make([]*unix.RawSockaddrInet4, len(srcs))
	for j, s := range srcs {
		from[j] = rawAddr(netip.AddrPortFrom(s, 0))
	}
	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			// An OS thread of its own: the blocking calls below park it, not the runtime.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for i := int(next.Add(1)) - 1; i < len(fds); i = int(next.Add(1)) - 1 {
				var fd int
				var err error
				for range attempts {
					if time.Now().After(deadline) {
						err = fmt.Errorf("not opened within %v", clientTimeout)
						break
					}
					if fd, err = dial(from[i%len(from)], to); err == nil {
						break
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { fmt.Printf("first failure: %v\n", err) })
					continue
				}
				fds[i] = int32(fd)
				ok.Add(1)
			}
		})
	}
	wg.Wait()
}

// dial is one connection, blocking: socket, the source address without a port
// (IP_BIND_ADDRESS_NO_PORT: connect picks the port per destination, so one source can hold
// far more than the 28,232 ports a plain bind would reserve to it), bind, connect. Raw
// system calls: see the top of this file.
func dial(from, to *unix.RawSockaddrInet4) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, fmt.Errorf("socket: %w", e)
	}
	one := int32(1)
	var err error
	if _, _, e = unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, uintptr(unsafe.Pointer(&one)), 4, 0); e != 0 {
		err = fmt.Errorf("setsockopt IP_BIND_ADDRESS_NO_PORT: %w", e)
	} else if _, _, e = unix.RawSyscall(unix.SYS_BIND, fd, uintptr(unsafe.Pointer(from)), unix.SizeofSockaddrInet4); e != 0 {
		err = fmt.Errorf("bind %v: %w", netip.AddrFrom4(from.Addr), e)
	} else if _, _, e = unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(unsafe.Pointer(to)), unix.SizeofSockaddrInet4); e != 0 {
		err = fmt.Errorf("connect from %v: %w", netip.AddrFrom4(from.Addr), e)
	}
	if err != nil {
		unix.Close(int(fd))
		return -1, err
	}
	return int(fd), nil
}

// rawAddr is a as struct sockaddr_in: the port in network byte order.
func rawAddr(a netip.AddrPort) *unix.RawSockaddrInet4 {
	r := &unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Addr().As4()}
	p := (*[2]byte)(unsafe.Pointer(&r.Port))
	p[0], p[1] = byte(a.Port()>>8), byte(a.Port())
	return r
}

// echo proves every open connection is served: each worker takes echoChunk connections,
// writes a byte on each, then waits in poll(2) for the echoes and reads each one as it
// comes (recv(MSG_DONTWAIT)), until clientTimeout. Writing the whole chunk first lets the
// servers answer many in one wake-up; poll lets the worker sleep until they do, where
// sweeping the chunk with recv would spend a system call on every connection not yet
// answered.
func echo(fds []int32, threads int) (ok, failed int64) {
	var okN, failN, next atomic.Int64
	deadline := time.Now().Add(clientTimeout)
	var wg sync.WaitGroup
	for range threads {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			msg, b := []byte{'s'}, []byte{0}
			pending := make([]unix.PollFd, 0, echoChunk)
			for lo := int(next.Add(echoChunk)) - echoChunk; lo < len(fds); lo = int(next.Add(echoChunk)) - echoChunk {
				pending = pending[:0]
				for _, fd := range fds[lo:min(lo+echoChunk, len(fds))] {
					if fd <= 0 {
						continue // never opened: counted by open
					}
					if _, err := unix.Write(int(fd), msg); err != nil {
						failN.Add(1)
						continue
					}
					pending = append(pending, unix.PollFd{Fd: fd, Events: unix.POLLIN})
				}
				// Each round answers at least one connection or waits up to 100 ms: at most
				// echoChunk rounds that answer, and clientTimeout's worth that wait.
				for round := 0; len(pending) > 0 && round < echoChunk+int(clientTimeout/(100*time.Millisecond)); round++ {
					if time.Now().After(deadline) {
						break
					}
					if _, err := unix.Poll(pending, 100); err != nil && !errors.Is(err, unix.EINTR) {
						break
					}
					left := pending[:0]
					for _, p := range pending {
						if p.Revents == 0 {
							left = append(left, unix.PollFd{Fd: p.Fd, Events: unix.POLLIN})
							continue
						}
						n, _, err := unix.Recvfrom(int(p.Fd), b, unix.MSG_DONTWAIT)
						switch {
						case errors.Is(err, unix.EAGAIN):
							left = append(left, unix.PollFd{Fd: p.Fd, Events: unix.POLLIN})
						case err == nil && n == 1 && b[0] == 's':
							okN.Add(1)
						default: // an error, end of stream, or another byte
							failN.Add(1)
						}
					}
					pending = left
				}
				failN.Add(int64(len(pending))) // no echo within clientTimeout
			}
		})
	}
	wg.Wait()
	return okN.Load(), failN.Load()
}
