package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/netns"
	"portproof/internal/procfs"
)

// run is one scale run inside the namespace: what it started and what it measured.
type run struct {
	cfg     *config
	res     result
	bin     string  // the refserver CLI
	procs   []*proc // every process started, killed on the way out whatever happened
	servers []*proc
	clients []*proc
}

// newResult records the machine and the settings the plan depends on: the port range, and
// the hard limit on descriptors that every process here may raise itself to.
func newResult(cfg *config) result {
	res := result{Kernel: procfs.KernelRelease(), CPU: procfs.CPUModel(), CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Conns: cfg.conns, Servers: cfg.servers, Clients: cfg.clients, Threads: cfg.threads,
		Addr: cfg.addr.String(), PortRange: netns.Sysctl("net.ipv4.ip_local_port_range")}
	var lo, hi int
	fmt.Sscanf(res.PortRange, "%d %d", &lo, &hi)
	res.HalfRange = (hi - lo + 1) / 2
	var rl unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	res.DescriptorHard = int(rl.Max)
	return res
}

func refserverBinary(cfg *config) string {
	if cfg.refserver != "" {
		return cfg.refserver
	}
	exe, _ := os.Executable()
	return filepath.Join(filepath.Dir(exe), "refserver-cli")
}

func (r *run) killAll() {
	for _, p := range r.procs {
		p.kill()
	}
}

// plan chooses the source addresses: enough that no source-to-destination pair passes 80%
// of half the port range, spread over the clients; servers and clients each well under the
// descriptor limit.
func (r *run) plan() error {
	cfg, res := r.cfg, &r.res
	if cfg.conns < 1 || cfg.servers < 1 || cfg.clients < 1 || cfg.threads < 1 {
		return fmt.Errorf("-conns, -servers, -clients and -threads must be 1 or more")
	}
	perSource := res.HalfRange * 8 / 10
	res.Sources = max((cfg.conns+perSource-1)/perSource, cfg.clients)
	res.Sources = (res.Sources + cfg.clients - 1) / cfg.clients * cfg.clients // a whole number per client
	if res.Sources > 250 {
		return fmt.Errorf("%d connections need %d source addresses: too many", cfg.conns, res.Sources)
	}
	perServer := cfg.conns / cfg.servers
	if perServer*11/10+64 > res.DescriptorHard {
		return fmt.Errorf("%d connections over %d servers is %d each: too near RLIMIT_NOFILE %d; add -servers", cfg.conns, cfg.servers, perServer, res.DescriptorHard)
	}
	if cfg.conns/cfg.clients+64 > res.DescriptorHard {
		return fmt.Errorf("%d connections over %d clients: too many for RLIMIT_NOFILE %d; add -clients", cfg.conns, cfg.clients, res.DescriptorHard)
	}
	fmt.Printf("scale: %s connections to %s in a private network namespace: %d refserver processes sharing the port (SO_REUSEPORT), "+
		"%d client processes from %d source addresses (127.0.0.2 to 127.0.0.%d, about %s each; half the port range %s is %s)\n",
		num(cfg.conns), cfg.addr, cfg.servers, cfg.clients, res.Sources, res.Sources+1, num(cfg.conns/res.Sources), res.PortRange, num(res.HalfRange))
	return nil
}

// startServer starts one refserver CLI on addr and waits for its "listening on" line.
func (r *run) startServer(name string, addr netip.AddrPort, extra ...string) (*proc, error) {
	// -backlog: room in the accept queue for the clients to run ahead of a server that the
	// scheduler keeps waiting; a full queue drops the SYN (TcpExt ListenOverflows), and the
	// connect waits a second for its retransmission. The kernel caps it at
	// net.core.somaxconn, which inside sets to match.
	args := append([]string{"-addr", addr.String(), "-mode", "echo", "-loops", "1", "-quiet", "-idle-timeout", "0", "-max-conns", "0",
		"-backlog", strconv.Itoa(backlog)}, extra...)
	p, err := start(name, r.bin, args...)
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, p)
	if err := p.waitFor("listening on ", 10*time.Second); err != nil {
		return nil, err
	}
	go drain(p)
	return p, nil
}

// startServers starts the refserver processes that share the address (SO_REUSEPORT).
func (r *run) startServers() error {
	for i := range r.cfg.servers {
		p, err := r.startServer(fmt.Sprintf("refserver %d", i+1), r.cfg.addr, "-reuseport")
		if err != nil {
			return err
		}
		r.servers = append(r.servers, p)
	}
	fmt.Printf("scale: %d refserver processes listen on %s (pids %s)\n", r.cfg.servers, r.cfg.addr, pids(r.servers))
	return nil
}

// memory is what the connections cost, read before and after they open: the kernel's slab
// caches and TCP buffer pages, the servers' resident memory.
type memory struct {
	slab    map[string]int64
	slabErr error // /proc/slabinfo wants root
	sock    procfs.Sockstat
	rss     int64
}

func (r *run) memory() memory {
	var m memory
	m.slab, m.slabErr = procfs.Slabs()
	m.sock, _ = procfs.ReadSockstat()
	for _, p := range r.servers {
		rss, _ := procfs.RSS(p.cmd.Process.Pid)
		m.rss += rss
	}
	return m
}

// progress is what the client processes report on their stdout, each its own counters.
type progress struct {
	counts, failures   []atomic.Int64
	echoed, echoFailed []atomic.Int64
	done               chan error // nil once a client reports "done", else why it ended
	echoes             chan error // nil once a client reports "echoed", else why it ended
}

// establish starts the client processes, each with its share of the connections and of
// the source addresses, and waits until every one says its connections are open. The time
// is from before the first client starts to the last one's "done": establishment alone,
// the echoes come after (echo).
func (r *run) establish() (*progress, error) {
	cfg := r.cfg
	self, _ := os.Executable()
	pr := &progress{counts: make([]atomic.Int64, cfg.clients), failures: make([]atomic.Int64, cfg.clients),
		echoed: make([]atomic.Int64, cfg.clients), echoFailed: make([]atomic.Int64, cfg.clients),
		done: make(chan error, 2*cfg.clients), echoes: make(chan error, 2*cfg.clients)}
	r.res.LoadAvg = loadavg()
	netBefore := readNetstat()
	cpuBefore := cpuOf(r.servers)
	t0 := time.Now()
	per := r.res.Sources / cfg.clients
	for i := range cfg.clients {
		var srcs []string
		for j := range per {
			srcs = append(srcs, fmt.Sprintf("127.0.0.%d", 2+i*per+j))
		}
		n := cfg.conns / cfg.clients
		if i < cfg.conns%cfg.clients {
			n++
		}
		p, err := start(fmt.Sprintf("client %d", i+1), self, "-client", "-addr", cfg.addr.String(), "-src", strings.Join(srcs, ","),
			"-n", strconv.Itoa(n), "-threads", strconv.Itoa(cfg.threads))
		if err != nil {
			r.killAll()
			fatal(err)
		}
		r.procs = append(r.procs, p)
		r.clients = append(r.clients, p)
		go pr.follow(i, p)
	}
	err := r.waitEstablished(pr, t0)
	r.res.EstablishSeconds = time.Since(t0).Seconds()
	for i := range pr.failures {
		r.res.ClientFailures += int(pr.failures[i].Load())
	}
	if err != nil {
		return pr, err
	}
	netAfter := readNetstat()
	r.res.ListenOverflows = netAfter["ListenOverflows"] - netBefore["ListenOverflows"]
	r.res.SynRetrans = netAfter["TCPSynRetrans"] - netBefore["TCPSynRetrans"]
	r.res.ClientCPUSeconds = cpuOf(r.clients).Seconds()
	r.res.ServerCPUSeconds = (cpuOf(r.servers) - cpuBefore).Seconds()
	r.res.Rate = float64(cfg.conns) / r.res.EstablishSeconds
	fmt.Printf("scale: the clients report %s connections in %.2fs (%s/s; load average as they started: %s)\n",
		num(cfg.conns), r.res.EstablishSeconds, num(int(r.res.Rate)), r.res.LoadAvg)
	fmt.Printf("scale: CPU while establishing: clients %.2fs, servers %.2fs (%.1f µs per connection together); "+
		"kernel: %d SYNs retransmitted, %d accept-queue overflows\n",
		r.res.ClientCPUSeconds, r.res.ServerCPUSeconds, 1e6*(r.res.ClientCPUSeconds+r.res.ServerCPUSeconds)/float64(cfg.conns),
		r.res.SynRetrans, r.res.ListenOverflows)
	return pr, nil
}

// echo has every client send a byte on each of its connections and read it back, after
// the establishment and timed apart from it: each connection is proven served by refserver.
func (r *run) echo(pr *progress) error {
	t0 := time.Now()
	for _, p := range r.clients {
		if _, err := io.WriteString(p.in, "echo\n"); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	timeout := time.After(r.cfg.timeout)
	for range r.clients {
		select {
		case err := <-pr.echoes:
			if err != nil {
				return err
			}
		case <-timeout:
			return fmt.Errorf("no echoes within %v", r.cfg.timeout)
		}
	}
	r.res.EchoSeconds = time.Since(t0).Seconds()
	for i := range pr.echoed {
		r.res.Echoed += int(pr.echoed[i].Load())
		r.res.EchoFailures += int(pr.echoFailed[i].Load())
	}
	fmt.Printf("scale: then every connection echoed a byte: %s answered, %d not, in %.2fs\n", num(r.res.Echoed), r.res.EchoFailures, r.res.EchoSeconds)
	return nil
}

// loadavg is how busy the machine was: /proc/loadavg's three averages, and how many of its
// tasks were runnable at that instant (the averages also remember this run's last minute).
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 4 {
		return "?"
	}
	run, total, _ := strings.Cut(f[3], "/")
	return fmt.Sprintf("%s %s %s, %s of %s tasks runnable", f[0], f[1], f[2], run, total)
}

// cpuOf is the CPU time the processes have used so far, all their threads.
func cpuOf(ps []*proc) time.Duration {
	var d time.Duration
	for _, p := range ps {
		c, _ := procfs.CPU(p.cmd.Process.Pid)
		d += c
	}
	return d
}

// readNetstat is the namespace's TcpExt counters (/proc/net/netstat): ListenOverflows
// counts the SYNs and final ACKs a full accept queue dropped, TCPSynRetrans the SYNs and
// SYN-ACKs sent again, each a handshake that waited a second or more.
func readNetstat() map[string]int64 {
	m := map[string]int64{}
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return m
	}
	lines := strings.Split(string(b), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for j := 1; j < len(names); j++ {
			m[names[j]], _ = strconv.ParseInt(values[j], 10, 64)
		}
	}
	return m
}

// follow reads client i's lines: "progress N" as it goes, "done N FAILED" once its
// connections are open (or failed three times each), "echoed N FAILED" after an echo;
// anything else is passed on.
func (pr *progress) follow(i int, p *proc) {
	for p.out.Scan() {
		f := strings.Fields(p.out.Text())
		n := make([]int64, len(f)) // the figures after the line's first word
		for j := 1; j < len(f); j++ {
			n[j], _ = strconv.ParseInt(f[j], 10, 64)
		}
		switch {
		case len(f) == 2 && f[0] == "progress":
			pr.counts[i].Store(n[1])
		case len(f) == 3 && f[0] == "done":
			pr.counts[i].Store(n[1])
			pr.failures[i].Store(n[2])
			pr.done <- nil
		case len(f) == 3 && f[0] == "echoed":
			pr.echoed[i].Store(n[1])
			pr.echoFailed[i].Store(n[2])
			pr.echoes <- nil
		default:
			fmt.Fprintf(os.Stderr, "  client %d: %s\n", i+1, p.out.Text())
		}
	}
	err := fmt.Errorf("client %d ended early", i+1)
	pr.done <- err
	pr.echoes <- err
}

// waitEstablished waits for every client's "done", at most -timeout, and shows the count
// as it grows: on one line rewritten in a terminal, a line every 2 s in a log.
func (r *run) waitEstablished(pr *progress, t0 time.Time) error {
	cfg := r.cfg
	tty := isTerminal(os.Stderr)
	var last time.Time
	show := func(final bool) {
		var total int64
		for i := range pr.counts {
			total += pr.counts[i].Load()
		}
		st, _ := procfs.ReadSockstat()
		el := time.Since(t0).Seconds()
		line := fmt.Sprintf("establishing: %7s / %s  %3.0f%%  %6s/s  kernel: %s TCP sockets in use  %4.1fs",
			num(int(total)), num(cfg.conns), 100*float64(total)/float64(cfg.conns), num(int(float64(total)/el)), num(int(st.InUse)), el)
		switch {
		case tty && final:
			fmt.Fprintf(os.Stderr, "\r%s\n", line)
		case tty:
			fmt.Fprintf(os.Stderr, "\r%s", line)
		case final || time.Since(last) >= 2*time.Second:
			fmt.Fprintln(os.Stderr, line)
			last = time.Now()
		}
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(cfg.timeout)
	for finished := 0; finished < cfg.clients; {
		select {
		case err := <-pr.done:
			if err != nil {
				show(true)
				return err
			}
			finished++
		case <-tick.C:
			show(false)
		case <-timeout:
			show(true)
			return fmt.Errorf("not established within %v", cfg.timeout)
		}
	}
	show(true) // the last count, all of them: the client processes' own word
	return nil
}

// census counts the connections where the kernel keeps them, its socket table (and ss -s),
// and in each server, its descriptors.
func (r *run) census() error {
	res, addr := &r.res, r.cfg.addr
	t1 := time.Now()
	perSrc := map[netip.Addr]int{}
	err := procfs.EachTCP(unix.AF_INET, func(row procfs.TCPRow) {
		switch {
		case row.State == procfs.TCPListen && row.Local == addr:
			res.Listeners++
		case row.State != procfs.TCPEstablished:
		case row.Local == addr:
			res.Established++
		case row.Remote == addr:
			res.ClientEnds++
			perSrc[row.Local.Addr()]++
		}
	})
	if err != nil {
		return err
	}
	res.TableSeconds = time.Since(t1).Seconds()
	for _, v := range perSrc {
		res.PerSourceMax = max(res.PerSourceMax, v)
	}
	if out, err := exec.Command("ss", "-s").Output(); err == nil {
		for line := range strings.SplitSeq(string(out), "\n") {
			if strings.HasPrefix(line, "TCP:") {
				res.SS = strings.Join(strings.Fields(line), " ")
			}
		}
	}
	for _, p := range r.servers {
		s, _, _, _ := procfs.FDs(p.cmd.Process.Pid)
		res.PerServer = append(res.PerServer, s-1) // less the listener
		res.MaxServerFDs = max(res.MaxServerFDs, s)
	}
	return nil
}

// costs is what the connections added between before and after, per connection.
func (res *result) costs(before, after memory) {
	conns := float64(max(res.Established, 1))
	res.ServerRSSPerConn = float64(after.rss-before.rss) / conns
	if before.slabErr == nil {
		var total int64
		for k, v := range after.slab {
			d := v - before.slab[k]
			total += d
			if d > 0 {
				res.SlabTop = append(res.SlabTop, slabDelta{k, float64(d) / conns})
			}
		}
		slices.SortFunc(res.SlabTop, func(a, b slabDelta) int { return int(b.Bytes - a.Bytes) })
		res.SlabTop = res.SlabTop[:min(len(res.SlabTop), 6)]
		res.SlabPerConn = float64(total) / conns
		// proc_inode_cache grows by one inode per descriptor whenever something walks
		// /proc/PID/fd (ps, lsof, a monitor): not a socket's cost, so it is shown apart.
		res.ProcInodePerConn = float64(after.slab["proc_inode_cache"]-before.slab["proc_inode_cache"]) / conns
	}
	res.SockMemPages = after.sock.MemPages - before.sock.MemPages
}

func (res *result) printCensus() {
	fmt.Printf("kernel: %s ESTABLISHED server ends on %s and %s client ends toward it (/proc/net/tcp, read in %.1fs), %d listeners\n",
		num(res.Established), res.Addr, num(res.ClientEnds), res.TableSeconds, res.Listeners)
	if res.SS != "" {
		fmt.Printf("kernel: ss -s: %s\n", res.SS)
	}
	fmt.Printf("kernel: most connections from one source address to %s: %s (half the port range: %s)\n", res.Addr, num(res.PerSourceMax), num(res.HalfRange))
	fmt.Printf("servers: connections held per refserver process (SO_REUSEPORT's spread): %s; most descriptors in one: %s of %s\n",
		joinNums(res.PerServer), num(res.MaxServerFDs), num(res.DescriptorHard))
	fmt.Printf("memory: kernel slab %.2f KiB per connection, both ends, without proc_inode_cache (%.2f KiB with it; largest: %s); TCP buffer pages %+d; refserver RSS %.0f bytes per connection\n",
		(res.SlabPerConn-res.ProcInodePerConn)/1024, res.SlabPerConn/1024, slabList(res.SlabTop), res.SockMemPages, res.ServerRSSPerConn)
}

// teardown ends the clients first (their FINs end the servers' connections), then the
// servers, and counts what is left ESTABLISHED.
func (r *run) teardown() {
	t2 := time.Now()
	for _, p := range r.clients {
		p.in.Close()
	}
	waitAll(r.clients, 30*time.Second)
	for _, p := range r.servers {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	waitAll(r.servers, 15*time.Second)
	r.res.TeardownSeconds = time.Since(t2).Seconds()
	procfs.EachTCP(unix.AF_INET, func(row procfs.TCPRow) {
		if row.State == procfs.TCPEstablished {
			r.res.LeftEstablished++
		}
	})
	fmt.Printf("teardown: clients and servers exited in %.1fs; %d connections left ESTABLISHED\n", r.res.TeardownSeconds, r.res.LeftEstablished)
}

// halfRange shows the plan's reason: connect(2) from one source to one destination, past
// half the port range, against a refserver of its own on the next port. It needs room
// under the descriptor limit for more than half the range, else it is left out.
func (r *run) halfRange() error {
	res := &r.res
	n := min(res.HalfRange+4000, res.DescriptorHard-500)
	if n <= res.HalfRange+1000 {
		return nil
	}
	dst := netip.AddrPortFrom(r.cfg.addr.Addr(), r.cfg.addr.Port()+1)
	p, err := r.startServer("refserver (half range)", dst)
	if err != nil {
		return err
	}
	fmt.Printf("half range: %s connects from 127.0.0.250 to %s, one at a time (half the range is %s)\n", num(n), dst, num(res.HalfRange))
	res.HalfBlocks, err = halfRange(dst, netip.AddrFrom4([4]byte{127, 0, 0, 250}), n, 1000)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scale: half range: %v\n", err)
	}
	var below, above []float64
	var each []string
	for _, b := range res.HalfBlocks {
		switch {
		case b.To <= res.HalfRange:
			below = append(below, b.MeanUS)
		case b.From >= res.HalfRange:
			above = append(above, b.MeanUS)
		}
		each = append(each, fmt.Sprintf("%.0f", b.MeanUS))
	}
	res.HalfBelowUS, res.HalfAboveUS = median(below), median(above)
	fmt.Printf("half range: µs per connect, by blocks of 1,000: %s\n", strings.Join(each, " "))
	fmt.Printf("half range: connect(2) takes %.0f µs below half the range, %.0f µs past it (%.1f×), medians of blocks of 1,000\n",
		res.HalfBelowUS, res.HalfAboveUS, res.HalfAboveUS/res.HalfBelowUS)
	p.in.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	waitAll([]*proc{p}, 15*time.Second)
	return nil
}

// verdict says whether every connection was there on both ends and none after, and hands
// the result to the process outside the namespace.
func (r *run) verdict() int {
	res := &r.res
	ok := res.Established == r.cfg.conns && res.ClientEnds == r.cfg.conns && res.Echoed == r.cfg.conns && res.LeftEstablished == 0
	switch {
	case !ok:
		fmt.Fprintf(os.Stderr, "scale: FAILED: wanted %s established on both ends, each echoing, and none left after\n", num(r.cfg.conns))
	case res.Established > 65536:
		fmt.Printf("scale: %s simultaneous connections to one address and port, more than 65,536\n", num(res.Established))
	}
	if path := os.Getenv(envResult); path != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		os.WriteFile(path, b, 0o644)
	}
	if !ok {
		return 1
	}
	return 0
}
