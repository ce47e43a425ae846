package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"portproof/internal/netns"
	"portproof/internal/procfs"
)

// A scenario drives one server for one round and says what it measured.
type scenario struct {
	key   string // the -scenarios name
	title string // the table's name
	unit  string // of the rate: "round trips/s", "MB/s", "connections/s"
	op    string // what one operation is, for CPU per operation
	run   func(cfg *config, s *server) (measure, error)
}

var scenarios = []scenario{
	{"pingpong50", "ping-pong, 50 connections", "round trips/s", "round trip", func(cfg *config, s *server) (measure, error) { return pingPong(cfg, s, 50) }},
	{"pingpong1000", "ping-pong, 1000 connections", "round trips/s", "round trip", func(cfg *config, s *server) (measure, error) { return pingPong(cfg, s, 1000) }},
	{"bulk", "bulk, 10 connections × 64 KiB writes", "MB/s", "64 KiB echoed", bulk},
	{"connrate", "connection rate (connect, 1 byte, close)", "connections/s", "connection", connRate},
	{"idle", "idle connections", "", "", idle},
}

// measure is one round of one scenario against one server.
type measure struct {
	Ops      float64 `json:"ops"`       // operations inside the window
	Seconds  float64 `json:"seconds"`   // the window
	Rate     float64 `json:"rate"`      // ops/s, or MB/s for bulk
	P50      float64 `json:"p50_us"`    // latency of one operation, µs
	P99      float64 `json:"p99_us"`    //
	CPU      float64 `json:"cpu_s"`     // the server's utime+stime inside the window
	CPUPerOp float64 `json:"cpu_op_us"` // CPU / Ops, µs
	RWPerOp  float64 `json:"rw_op"`     // the server's read+write system calls per operation
	// SwitchesPerOp is the server threads' context switches per operation: wake-ups.
	SwitchesPerOp float64 `json:"switches_op"`
	// TotalPerOp is server and load generator together, µs per operation: on loopback a
	// write runs the receiver's TCP processing in the writer's context, so how the work
	// splits between the two depends on who pushes; the sum does not.
	TotalPerOp float64 `json:"total_cpu_op_us"`
	Errors     int     `json:"errors"`
	// idle only
	Target     int     `json:"target,omitempty"`       // connections asked for
	Held       int     `json:"held,omitempty"`         // connections the server holds (its socket descriptors)
	RSSPerConn float64 `json:"rss_kib_conn,omitempty"` // (RSS with them - RSS before) / Held, KiB
	FDsPerConn float64 `json:"fds_conn,omitempty"`     // descriptors per connection held
}

// sources are the client's source addresses: 127.0.0.2 and up, all on lo. Spreading
// connections over them keeps each source-to-destination pair far below half of the
// ephemeral port range, where connect(2) slows down (see the docs page).
var sources = func() []netip.Addr {
	var a []netip.Addr
	for i := 2; i < 18; i++ {
		a = append(a, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
	}
	return a
}()

var nextSource atomic.Uint32

// dial connects from the next source address, spreading the load generator's connections
// over them (netns.DialFrom says why a source address is not a port range of its own).
func dial(dst netip.AddrPort, timeout time.Duration) (*net.TCPConn, error) {
	return netns.DialFrom(sources[int(nextSource.Add(1))%len(sources)], dst, timeout)
}

// dialAll opens n connections, conc at a time.
func dialAll(dst netip.AddrPort, n, conc int) ([]*net.TCPConn, error) {
	conns := make([]*net.TCPConn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(conc, n) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				c, err := dial(dst, 5*time.Second)
				if err != nil {
					mu.Lock()
					first = cmp(first, err)
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if first != nil {
		closeAll(conns)
		return nil, first
	}
	return conns, nil
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func closeAll(conns []*net.TCPConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// window lets the load warm up, then measures the server's CPU time over cfg.duration while
// rec is set: the workers count only what they finish inside it.
func window(cfg *config, s *server, rec *atomic.Bool) (u usage, err error) {
	time.Sleep(cfg.warmup)
	c0, err := procfs.CPU(s.pid)
	if err != nil {
		return u, err
	}
	io0, _ := procfs.ReadIO(s.pid)
	cs0, _ := procfs.ContextSwitches(s.pid)
	me0, _ := procfs.CPU(os.Getpid())
	t0 := time.Now()
	rec.Store(true)
	time.Sleep(cfg.duration)
	rec.Store(false)
	u.secs = time.Since(t0).Seconds()
	c1, err := procfs.CPU(s.pid)
	io1, _ := procfs.ReadIO(s.pid)
	cs1, _ := procfs.ContextSwitches(s.pid)
	me1, _ := procfs.CPU(os.Getpid())
	u.switches = cs1 - cs0
	u.client = me1 - me0
	u.cpu = c1 - c0
	u.syscalls = (io1.Syscr - io0.Syscr) + (io1.Syscw - io0.Syscw)
	return u, err
}

// usage is what the server spent inside the window.
type usage struct {
	cpu      time.Duration
	secs     float64
	syscalls int64         // read- and write-family system calls (/proc/PID/io)
	switches int64         // context switches of the server's threads
	client   time.Duration // the load generator's CPU time (this process)
}

// worker is one client goroutine's tally, merged after the round.
type worker struct {
	ops  float64
	lat  []time.Duration
	errs int
	err  error
}

func (w *worker) fail(err error) {
	w.errs++
	if w.err == nil {
		w.err = err
	}
}

// finish merges the workers into m, with the CPU window.
func finish(m *measure, ws []*worker, u usage) error {
	var lat []time.Duration
	var first error
	for _, w := range ws {
		m.Ops += w.ops
		m.Errors += w.errs
		lat = append(lat, w.lat...)
		first = cmp(first, w.err)
	}
	m.Seconds = u.secs
	m.Rate = m.Ops / u.secs
	m.CPU = u.cpu.Seconds()
	if m.Ops > 0 {
		m.CPUPerOp = m.CPU / m.Ops * 1e6
		m.RWPerOp = float64(u.syscalls) / m.Ops
		m.SwitchesPerOp = float64(u.switches) / m.Ops
		m.TotalPerOp = (u.cpu + u.client).Seconds() / m.Ops * 1e6
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		m.P50 = float64(lat[len(lat)/2]) / 1e3
		m.P99 = float64(lat[len(lat)*99/100]) / 1e3
	}
	if m.Ops == 0 {
		return fmt.Errorf("no operation finished in the window: %v", first)
	}
	if m.Errors > 0 {
		return fmt.Errorf("%d errors, the first: %v", m.Errors, first)
	}
	return nil
}

// round is what every timed scenario shares: a tally per client goroutine, the flags that
// tell them when to count (rec, set by window) and when to stop, and the goroutines to wait
// for.
type round struct {
	ws        []*worker
	rec, stop atomic.Bool
	wg        sync.WaitGroup
}

func newRound(n int) *round {
	r := &round{ws: make([]*worker, n)}
	for i := range r.ws {
		r.ws[i] = &worker{}
	}
	return r
}

// end waits out the measured window, then tells the workers to stop, gives the ones
// blocked on a wedged server a deadline, and waits for them.
func (r *round) end(cfg *config, s *server, conns []*net.TCPConn) (usage, error) {
	u, err := window(cfg, s, &r.rec)
	r.stop.Store(true)
	for _, c := range conns {
		if c != nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
		}
	}
	r.wg.Wait()
	return u, err
}

// measure ends the round and merges the workers' tallies with the server's usage.
func (r *round) measure(cfg *config, s *server, conns []*net.TCPConn) (measure, error) {
	var m measure
	u, err := r.end(cfg, s, conns)
	if err != nil {
		return m, err
	}
	return m, finish(&m, r.ws, u)
}

// --8<-- [start:pingpong]

// pingPong: each connection sends 64 bytes and waits for their echo, over and over. One
// operation is one round trip; its latency is from write to the last byte read back.
func pingPong(cfg *config, s *server, nconns int) (measure, error) {
	conns, err := dialAll(s.addr, nconns, 64)
	if err != nil {
		return measure{}, err
	}
	defer closeAll(conns)
	r := newRound(nconns)
	for i, c := range conns {
		w := r.ws[i]
		r.wg.Go(func() {
			msg, got := bytes.Repeat([]byte{byte(i)}, 64), make([]byte, 64)
			for n := 0; !r.stop.Load(); n++ {
				msg[0] = byte(n)
				t := time.Now()
				if _, err := c.Write(msg); err != nil {
					w.fail(err)
					return
				}
				if _, err := io.ReadFull(c, got); err != nil {
					w.fail(err)
					return
				}
				d := time.Since(t)
				if !bytes.Equal(msg, got) {
					w.fail(errors.New("the echo differs from what was sent"))
					return
				}
				if r.rec.Load() {
					w.ops++
					w.lat = append(w.lat, d)
				}
			}
		})
	}
	return r.measure(cfg, s, conns)
}

// --8<-- [end:pingpong]

// bulk: 10 connections, each with a writer that sends 64 KiB blocks as fast as the server
// takes them and a reader that counts what comes back. One operation is 64 KiB echoed; the
// rate is MB/s of echo (10^6 bytes).
func bulk(cfg *config, s *server) (measure, error) {
	const nconns, block = 10, 64 << 10
	var m measure
	conns, err := dialAll(s.addr, nconns, nconns)
	if err != nil {
		return m, err
	}
	defer closeAll(conns)
	r := newRound(nconns)
	bytesIn := make([]atomic.Int64, nconns)
	for i, c := range conns {
		w := r.ws[i]
		r.wg.Go(func() {
			buf := bytes.Repeat([]byte("portproof"), block/9+1)[:block]
			for !r.stop.Load() {
				if _, err := c.Write(buf); err != nil {
					w.fail(err)
					return
				}
			}
			c.CloseWrite() // the server echoes what is left, then ends too
		})
		r.wg.Go(func() {
			buf := make([]byte, block)
			for {
				n, err := c.Read(buf)
				if r.rec.Load() {
					bytesIn[i].Add(int64(n))
				}
				if err == io.EOF {
					return
				}
				if err != nil {
					if !r.stop.Load() {
						w.fail(err)
					}
					return
				}
			}
		})
	}
	u, err := r.end(cfg, s, conns)
	if err != nil {
		return m, err
	}
	for i, w := range r.ws {
		w.ops = float64(bytesIn[i].Load()) / block
	}
	err = finish(&m, r.ws, u)
	m.Rate = m.Ops * block / u.secs / 1e6
	return m, err
}

// connRate: 32 clients, each in a loop: connect, send one byte, read its echo, close. One
// operation is one whole connection; its latency is from connect to the echo.
func connRate(cfg *config, s *server) (measure, error) {
	const clients = 32
	r := newRound(clients)
	for _, w := range r.ws {
		r.wg.Go(func() {
			b := []byte{'x'}
			for !r.stop.Load() {
				t := time.Now()
				c, err := dial(s.addr, 5*time.Second)
				if err != nil {
					w.fail(err)
					return
				}
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, err = c.Write(b)
				if err == nil {
					_, err = io.ReadFull(c, b)
				}
				c.Close()
				if err != nil {
					w.fail(err)
					return
				}
				if r.rec.Load() {
					w.ops++
					w.lat = append(w.lat, time.Since(t))
				}
			}
		})
	}
	return r.measure(cfg, s, nil)
}

// idle: open cfg.idleConns connections, each proven served by one byte echoed, and leave
// them silent. What the server holds is counted from its own descriptors (/proc/PID/fd),
// not from the client: a server out of descriptors leaves connections in the accept queue,
// where the client cannot tell them from served ones. RSS per connection is the growth of
// the server's resident memory over its fresh start, divided by the connections it holds.
func idle(cfg *config, s *server) (measure, error) {
	m := measure{Target: cfg.idleConns}
	time.Sleep(100 * time.Millisecond) // let the runtime's start-up settle
	rss0, err := procfs.RSS(s.pid)
	if err != nil {
		return m, err
	}
	cpu0, _ := procfs.CPU(s.pid)
	conns := make([]*net.TCPConn, cfg.idleConns)
	defer closeAll(conns)
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range 64 {
		wg.Go(func() {
			b := []byte{'i'}
			for i := int(next.Add(1)) - 1; i < len(conns) && failed.Load() < 64; i = int(next.Add(1)) - 1 {
				c, err := dial(s.addr, 2*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				conns[i] = c
				c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write(b); err == nil {
					_, err = io.ReadFull(c, b)
					if err != nil {
						failed.Add(1)
					}
				}
				c.SetDeadline(time.Time{})
			}
		})
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	time.Sleep(500 * time.Millisecond) // anything lazy in the server happens now
	rss1, err := procfs.RSS(s.pid)
	if err != nil {
		return m, err
	}
	cpu1, _ := procfs.CPU(s.pid)
	sockets, pipes, other, err := procfs.FDs(s.pid)
	if err != nil {
		return m, err
	}
	if s.profile {
		// The heap profile, written while the connections are held (serve.memProfile).
		syscall.Kill(s.pid, syscall.SIGUSR1)
		time.Sleep(time.Second)
		fmt.Fprintf(os.Stderr, "    %s: %s\n", s.name, s.stderr())
	}
	m.Held = sockets - 1 // less the listener
	m.Seconds = secs
	m.CPU = (cpu1 - cpu0).Seconds()
	m.Errors = int(failed.Load())
	if m.Held <= 0 {
		return m, fmt.Errorf("the server holds no connection (%d sockets, %d pipes, %d other descriptors)", sockets, pipes, other)
	}
	m.Ops = float64(m.Held)
	m.CPUPerOp = m.CPU / m.Ops * 1e6
	m.RSSPerConn = float64(rss1-rss0) / 1024 / float64(m.Held)
	m.FDsPerConn = float64(sockets+pipes-1) / float64(m.Held)
	return m, nil
}
