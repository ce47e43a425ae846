// Command scale opens more than 65,536 simultaneous connections to one address and port
// (make scale): several refserver processes share 127.0.0.1:7000 through SO_REUSEPORT,
// each under the 20,000-descriptor limit, and client processes connect from several source
// addresses, all inside a network namespace created for the run and gone after it. The count
// comes from the kernel's socket table, not from the clients.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"portproof/bench/internal/page"
	"portproof/internal/netns"
	"portproof/internal/procfs"
)

type config struct {
	conns, servers, clients int
	addr                    netip.AddrPort
	refserver               string
	page                    string
	timeout                 time.Duration
	conc                    int
}

const envResult = "PORTPROOF_SCALE_RESULT"

func main() {
	cfg := &config{}
	var addr string
	client := flag.Bool("client", false, "internal: run as one client process")
	src := flag.String("src", "", "internal (-client): source addresses, comma-separated")
	n := flag.Int("n", 0, "internal (-client): connections to open")
	flag.IntVar(&cfg.conns, "conns", 80000, "simultaneous connections to open")
	flag.IntVar(&cfg.servers, "servers", 5, "refserver processes sharing the port (SO_REUSEPORT)")
	flag.IntVar(&cfg.clients, "clients", 5, "client processes")
	flag.IntVar(&cfg.conc, "conc", 128, "connects in flight per client process")
	flag.StringVar(&addr, "addr", "127.0.0.1:7000", "the one address and port every connection goes to")
	flag.StringVar(&cfg.refserver, "refserver", "", "the refserver CLI `binary` (default: refserver-cli beside this program)")
	flag.StringVar(&cfg.page, "page", "", "docs `page` whose generated section gets the figures (empty: none)")
	flag.DurationVar(&cfg.timeout, "timeout", 3*time.Minute, "give up (and tear down) after this long")
	flag.Parse()
	var err error
	if cfg.addr, err = netip.ParseAddrPort(addr); err != nil || !cfg.addr.Addr().Is4() {
		fatal(fmt.Errorf("-addr %q: want an IPv4 address and port", addr))
	}
	if *client {
		os.Exit(runClient(cfg.addr, *src, *n, cfg.conc))
	}
	if netns.Inside() {
		os.Exit(inside(cfg))
	}
	os.Exit(outside(cfg))
}

// outside starts the run in a namespace of its own, then checks that the namespace is gone
// and writes the figures.
func outside(cfg *config) int {
	f, err := os.CreateTemp("", "portproof-scale-*.json")
	if err != nil {
		fatal(err)
	}
	f.Close()
	defer os.Remove(f.Name())
	os.Setenv(envResult, f.Name())
	code, ns, err := netns.Reexec()
	if err != nil {
		fatal(fmt.Errorf("a private network namespace is required: %w", err))
	}
	var res result
	if b, err := os.ReadFile(f.Name()); err == nil && len(b) > 0 {
		if err := json.Unmarshal(b, &res); err != nil {
			fatal(err)
		}
	}
	// The namespace lives as long as a process is in it; every one was ours.
	deadline := time.Now().Add(3 * time.Second)
	holders := netns.Holders(ns)
	for len(holders) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		holders = netns.Holders(ns)
	}
	res.Namespace, res.NamespaceGone = ns, len(holders) == 0
	if res.NamespaceGone {
		fmt.Printf("teardown: namespace %s is gone (no process holds it)\n", ns)
	} else {
		fmt.Printf("teardown: namespace %s still held by pids %v\n", ns, holders)
		code = max(code, 1)
	}
	if code == 0 && cfg.page != "" && res.Established > 0 {
		if err := page.ReplaceSection(cfg.page, scaleStart, scaleEnd, res.markdown()); err != nil {
			fatal(err)
		}
		if len(res.HalfBlocks) > 0 {
			if err := page.ReplaceSection(cfg.page, halfStart, halfEnd, res.halfMarkdown()); err != nil {
				fatal(err)
			}
		}
		fmt.Fprintf(os.Stderr, "scale: wrote the generated section of %s\n", cfg.page)
	}
	return code
}

// result is what the run measured; the child writes it, the parent adds the teardown.
type result struct {
	Kernel, CPU, Go, Date        string
	CPUs                         int
	Conns, Servers, Clients      int
	Addr                         string
	PortRange                    string
	HalfRange                    int
	Sources                      int
	PerSourceMax                 int // most connections from one source address (kernel count)
	EstablishSeconds, Rate       float64
	Established                  int   // server ends ESTABLISHED on Addr (kernel)
	ClientEnds                   int   // client ends ESTABLISHED toward Addr (kernel)
	Listeners                    int   // LISTEN sockets on Addr (kernel)
	PerServer                    []int // connections each refserver holds (its descriptors)
	SS                           string
	TableSeconds                 float64
	SlabPerConn                  float64 // bytes of slab objects per connection, both ends
	ProcInodePerConn             float64 // of which proc_inode_cache
	SlabTop                      []slabDelta
	SockMemPages                 int64
	ServerRSSPerConn             float64 // bytes
	TeardownSeconds              float64
	LeftEstablished              int
	Namespace                    string
	NamespaceGone                bool
	ClientFailures               int
	MaxServerFDs, DescriptorHard int
	HalfBlocks                   []halfBlock
	HalfBelowUS, HalfAboveUS     float64
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

type slabDelta struct {
	Cache string
	Bytes float64 // per connection
}

type proc struct {
	name string
	cmd  *exec.Cmd
	out  *bufio.Scanner
	in   io.WriteCloser
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Kill()
	}
}

// inside is the run itself, in the namespace.
func inside(cfg *config) int {
	if err := netns.Setup(nil); err != nil {
		fatal(err)
	}
	res := result{Kernel: procfs.KernelRelease(), CPU: procfs.CPUModel(), CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Conns: cfg.conns, Servers: cfg.servers, Clients: cfg.clients,
		Addr: cfg.addr.String(), PortRange: netns.Sysctl("net.ipv4.ip_local_port_range")}
	var lo, hi int
	fmt.Sscanf(res.PortRange, "%d %d", &lo, &hi)
	res.HalfRange = (hi - lo + 1) / 2
	var rl unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &rl)
	res.DescriptorHard = int(rl.Max)

	// The plan: sources enough that no source-to-destination pair passes 80% of half the
	// port range, spread over the clients; servers and clients each well under the limit.
	perSource := res.HalfRange * 8 / 10
	res.Sources = max((cfg.conns+perSource-1)/perSource, cfg.clients)
	res.Sources = (res.Sources + cfg.clients - 1) / cfg.clients * cfg.clients // a whole number per client
	if res.Sources > 250 {
		fatal(fmt.Errorf("%d connections need %d source addresses: too many", cfg.conns, res.Sources))
	}
	perServer := cfg.conns / cfg.servers
	if perServer*11/10+64 > res.DescriptorHard {
		fatal(fmt.Errorf("%d connections over %d servers is %d each: too near RLIMIT_NOFILE %d; add -servers", cfg.conns, cfg.servers, perServer, res.DescriptorHard))
	}
	if cfg.conns/cfg.clients+64 > res.DescriptorHard {
		fatal(fmt.Errorf("%d connections over %d clients: too many for RLIMIT_NOFILE %d; add -clients", cfg.conns, cfg.clients, res.DescriptorHard))
	}
	fmt.Printf("scale: %s connections to %s in a private network namespace: %d refserver processes sharing the port (SO_REUSEPORT), "+
		"%d client processes from %d source addresses (127.0.0.2 to 127.0.0.%d, about %s each; half the port range %s is %s)\n",
		num(cfg.conns), cfg.addr, cfg.servers, cfg.clients, res.Sources, res.Sources+1, num(cfg.conns/res.Sources), res.PortRange, num(res.HalfRange))

	var procs []*proc
	teardown := func() {
		for _, p := range procs {
			p.kill()
		}
	}
	defer teardown()
	bin := cfg.refserver
	if bin == "" {
		exe, _ := os.Executable()
		bin = filepath.Join(filepath.Dir(exe), "refserver-cli")
	}
	var servers []*proc
	for i := range cfg.servers {
		p, err := start(fmt.Sprintf("refserver %d", i+1), bin, "-addr", cfg.addr.String(), "-mode", "echo", "-reuseport", "-loops", "1",
			"-quiet", "-idle-timeout", "0", "-max-conns", "0")
		if err != nil {
			fatal(err)
		}
		procs = append(procs, p)
		servers = append(servers, p)
		if err := p.waitFor("listening on ", 10*time.Second); err != nil {
			teardown()
			fatal(err)
		}
		go drain(p)
	}
	fmt.Printf("scale: %d refserver processes listen on %s (pids %s)\n", cfg.servers, cfg.addr, pids(servers))

	slab0, slabErr := procfs.Slabs()
	sock0, _ := procfs.ReadSockstat()
	rss0 := int64(0)
	for _, p := range servers {
		r, _ := procfs.RSS(p.cmd.Process.Pid)
		rss0 += r
	}

	// The clients.
	self, _ := os.Executable()
	var clients []*proc
	counts := make([]atomic.Int64, cfg.clients)
	failures := make([]atomic.Int64, cfg.clients)
	done := make(chan error, cfg.clients)
	t0 := time.Now()
	for i := range cfg.clients {
		var srcs []string
		per := res.Sources / cfg.clients
		for j := range per {
			srcs = append(srcs, fmt.Sprintf("127.0.0.%d", 2+i*per+j))
		}
		n := cfg.conns / cfg.clients
		if i < cfg.conns%cfg.clients {
			n++
		}
		p, err := start(fmt.Sprintf("client %d", i+1), self, "-client", "-addr", cfg.addr.String(), "-src", strings.Join(srcs, ","),
			"-n", strconv.Itoa(n), "-conc", strconv.Itoa(cfg.conc))
		if err != nil {
			teardown()
			fatal(err)
		}
		procs = append(procs, p)
		clients = append(clients, p)
		go func() {
			for p.out.Scan() {
				f := strings.Fields(p.out.Text())
				switch {
				case len(f) == 2 && f[0] == "progress":
					v, _ := strconv.ParseInt(f[1], 10, 64)
					counts[i].Store(v)
				case len(f) == 3 && f[0] == "done":
					v, _ := strconv.ParseInt(f[1], 10, 64)
					fl, _ := strconv.ParseInt(f[2], 10, 64)
					counts[i].Store(v)
					failures[i].Store(fl)
					done <- nil
				default:
					fmt.Fprintf(os.Stderr, "  client %d: %s\n", i+1, p.out.Text())
				}
			}
			done <- fmt.Errorf("client %d ended early", i+1)
		}()
	}

	// The progress display, while connections open.
	tty := isTerminal(os.Stderr)
	tick := time.NewTicker(250 * time.Millisecond)
	var finished int
	var runErr error
	last := time.Time{}
	timeout := time.After(cfg.timeout)
wait:
	for finished < cfg.clients {
		select {
		case err := <-done:
			if err != nil {
				runErr = err
				break wait
			}
			finished++
		case <-tick.C:
			var total int64
			for i := range counts {
				total += counts[i].Load()
			}
			st, _ := procfs.ReadSockstat()
			el := time.Since(t0).Seconds()
			line := fmt.Sprintf("establishing: %7s / %s  %3.0f%%  %6s/s  kernel: %s TCP sockets in use  %4.1fs",
				num(int(total)), num(cfg.conns), 100*float64(total)/float64(cfg.conns), num(int(float64(total)/el)), num(int(st.InUse)), el)
			if tty {
				fmt.Fprintf(os.Stderr, "\r%s", line)
			} else if time.Since(last) >= 2*time.Second {
				fmt.Fprintln(os.Stderr, line)
				last = time.Now()
			}
		case <-timeout:
			runErr = fmt.Errorf("not established within %v", cfg.timeout)
			break wait
		}
	}
	tick.Stop()
	res.EstablishSeconds = time.Since(t0).Seconds()
	if tty {
		fmt.Fprintln(os.Stderr)
	}
	for i := range failures {
		res.ClientFailures += int(failures[i].Load())
	}
	if runErr != nil {
		fmt.Fprintf(os.Stderr, "scale: %v; tearing down\n", runErr)
		teardown()
		return 1
	}
	res.Rate = float64(cfg.conns) / res.EstablishSeconds
	fmt.Printf("scale: the clients report %s connections in %.1fs (%s/s), each answered by an echo\n",
		num(cfg.conns), res.EstablishSeconds, num(int(res.Rate)))
	time.Sleep(time.Second) // let the kernel's slab caches settle
	// Memory first: reading /proc/net/tcp and /proc/PID/fd below fills caches of their own
	// (proc_inode_cache, dentry).
	slab1, _ := procfs.Slabs()
	sock1, _ := procfs.ReadSockstat()

	// The kernel's count: its socket table.
	t1 := time.Now()
	perSrc := map[netip.Addr]int{}
	err := procfs.EachTCP(unix.AF_INET, func(r procfs.TCPRow) {
		switch {
		case r.State == procfs.TCPListen && r.Local == cfg.addr:
			res.Listeners++
		case r.State != procfs.TCPEstablished:
		case r.Local == cfg.addr:
			res.Established++
		case r.Remote == cfg.addr:
			res.ClientEnds++
			perSrc[r.Local.Addr()]++
		}
	})
	if err != nil {
		fatal(err)
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
	var rss1 int64
	for _, p := range servers {
		pid := p.cmd.Process.Pid
		s, _, _, _ := procfs.FDs(pid)
		res.PerServer = append(res.PerServer, s-1) // less the listener
		res.MaxServerFDs = max(res.MaxServerFDs, s)
		r, _ := procfs.RSS(pid)
		rss1 += r
	}
	res.ServerRSSPerConn = float64(rss1-rss0) / float64(max(res.Established, 1))
	if slabErr == nil {
		var total int64
		for k, v := range slab1 {
			d := v - slab0[k]
			total += d
			if d > 0 {
				res.SlabTop = append(res.SlabTop, slabDelta{k, float64(d) / float64(max(res.Established, 1))})
			}
		}
		slices.SortFunc(res.SlabTop, func(a, b slabDelta) int { return int(b.Bytes - a.Bytes) })
		res.SlabTop = res.SlabTop[:min(len(res.SlabTop), 6)]
		res.SlabPerConn = float64(total) / float64(max(res.Established, 1))
		// proc_inode_cache grows by one inode per descriptor whenever something walks
		// /proc/PID/fd (ps, lsof, a monitor): not a socket's cost, so it is shown apart.
		res.ProcInodePerConn = float64(slab1["proc_inode_cache"]-slab0["proc_inode_cache"]) / float64(max(res.Established, 1))
	}
	res.SockMemPages = sock1.MemPages - sock0.MemPages

	fmt.Printf("kernel: %s ESTABLISHED server ends on %s and %s client ends toward it (/proc/net/tcp, read in %.1fs), %d listeners\n",
		num(res.Established), cfg.addr, num(res.ClientEnds), res.TableSeconds, res.Listeners)
	if res.SS != "" {
		fmt.Printf("kernel: ss -s: %s\n", res.SS)
	}
	fmt.Printf("kernel: most connections from one source address to %s: %s (half the port range: %s)\n", cfg.addr, num(res.PerSourceMax), num(res.HalfRange))
	fmt.Printf("servers: connections held per refserver process (SO_REUSEPORT's spread): %s; most descriptors in one: %s of %s\n",
		joinNums(res.PerServer), num(res.MaxServerFDs), num(res.DescriptorHard))
	fmt.Printf("memory: kernel slab %.2f KiB per connection, both ends, without proc_inode_cache (%.2f KiB with it; largest: %s); TCP buffer pages %+d; refserver RSS %.0f bytes per connection\n",
		(res.SlabPerConn-res.ProcInodePerConn)/1024, res.SlabPerConn/1024, slabList(res.SlabTop), res.SockMemPages, res.ServerRSSPerConn)

	// Teardown: clients first (their FINs end the servers' connections), then the servers.
	t2 := time.Now()
	for _, p := range clients {
		p.in.Close()
	}
	waitAll(clients, 30*time.Second)
	for _, p := range servers {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	waitAll(servers, 15*time.Second)
	res.TeardownSeconds = time.Since(t2).Seconds()
	procfs.EachTCP(unix.AF_INET, func(r procfs.TCPRow) {
		if r.State == procfs.TCPEstablished {
			res.LeftEstablished++
		}
	})
	fmt.Printf("teardown: clients and servers exited in %.1fs; %d connections left ESTABLISHED\n", res.TeardownSeconds, res.LeftEstablished)

	// The rule's reason: connect(2) from one source to one destination, past half the range.
	if n := min(res.HalfRange+4000, res.DescriptorHard-500); n > res.HalfRange+1000 {
		dst := netip.AddrPortFrom(cfg.addr.Addr(), cfg.addr.Port()+1)
		p, err := start("refserver (half range)", bin, "-addr", dst.String(), "-mode", "echo", "-loops", "1",
			"-quiet", "-idle-timeout", "0", "-max-conns", "0")
		if err == nil {
			procs = append(procs, p)
			err = p.waitFor("listening on ", 10*time.Second)
		}
		if err != nil {
			fatal(err)
		}
		go drain(p)
		fmt.Printf("half range: %s connects from 127.0.0.250 to %s, one at a time (half the range is %s)\n", num(n), dst, num(res.HalfRange))
		res.HalfBlocks, err = halfRange(dst, netip.AddrFrom4([4]byte{127, 0, 0, 250}), n, 1000)
		if err != nil {
			fmt.Fprintf(os.Stderr, "scale: half range: %v\n", err)
		}
		var below, above []float64
		for _, b := range res.HalfBlocks {
			switch {
			case b.To <= res.HalfRange:
				below = append(below, b.MeanUS)
			case b.From >= res.HalfRange:
				above = append(above, b.MeanUS)
			}
		}
		res.HalfBelowUS, res.HalfAboveUS = median(below), median(above)
		var each []string
		for _, b := range res.HalfBlocks {
			each = append(each, fmt.Sprintf("%.0f", b.MeanUS))
		}
		fmt.Printf("half range: µs per connect, by blocks of 1,000: %s\n", strings.Join(each, " "))
		fmt.Printf("half range: connect(2) takes %.0f µs below half the range, %.0f µs past it (%.1f×), medians of blocks of 1,000\n",
			res.HalfBelowUS, res.HalfAboveUS, res.HalfAboveUS/res.HalfBelowUS)
		p.in.Close()
		p.cmd.Process.Signal(syscall.SIGTERM)
		waitAll([]*proc{p}, 15*time.Second)
	}

	ok := res.Established == cfg.conns && res.ClientEnds == cfg.conns && res.LeftEstablished == 0
	switch {
	case !ok:
		fmt.Fprintf(os.Stderr, "scale: FAILED: wanted %s established on both ends and none left after\n", num(cfg.conns))
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

func start(name, bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w (make scale builds it into bench/bin)", name, err)
	}
	sc := bufio.NewScanner(out)
	return &proc{name: name, cmd: cmd, out: sc, in: in}, nil
}

// waitFor reads the process's output until a line holds want.
func (p *proc) waitFor(want string, timeout time.Duration) error {
	found := make(chan bool, 1)
	go func() {
		for p.out.Scan() {
			if strings.Contains(p.out.Text(), want) {
				found <- true
				return
			}
		}
		found <- false
	}()
	select {
	case ok := <-found:
		if ok {
			return nil
		}
		return fmt.Errorf("%s exited before saying %q", p.name, want)
	case <-time.After(timeout):
		return fmt.Errorf("%s: no %q within %v", p.name, want, timeout)
	}
}

func drain(p *proc) {
	for p.out.Scan() {
	}
}

func waitAll(ps []*proc, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(func() {
			done := make(chan struct{})
			go func() { p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(timeout):
				p.kill()
				<-done
			}
		})
	}
	wg.Wait()
}

func pids(ps []*proc) string {
	var s []string
	for _, p := range ps {
		s = append(s, strconv.Itoa(p.cmd.Process.Pid))
	}
	return strings.Join(s, ", ")
}

// runClient is one client process: n connections from its source addresses, each proven
// by a byte echoed, then held until stdin closes.
func runClient(dst netip.AddrPort, srcList string, n, conc int) int {
	var srcs []netip.Addr
	for s := range strings.SplitSeq(srcList, ",") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			fmt.Printf("error: -src %q\n", s)
			return 2
		}
		srcs = append(srcs, a)
	}
	conns := make([]net.Conn, n)
	var next, ok, failed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		var last int64 = -1
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if v := ok.Load(); v != last {
					fmt.Printf("progress %d\n", v)
					last = v
				}
			}
		}
	}()
	for range conc {
		wg.Go(func() {
			b := []byte{'s'}
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					var c net.Conn
					if c, err = netns.DialFrom(srcs[i%len(srcs)], dst, 10*time.Second); err != nil {
						continue
					}
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err = c.Write(b); err == nil {
						_, err = io.ReadFull(c, b)
					}
					if err != nil {
						c.Close()
						continue
					}
					c.SetDeadline(time.Time{})
					conns[i] = c
					ok.Add(1)
					break
				}
				if err != nil {
					if failed.Add(1) == 1 {
						fmt.Printf("first failure: %v\n", err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	fmt.Printf("done %d %d\n", ok.Load(), failed.Load())
	io.Copy(io.Discard, os.Stdin) // hold until the driver closes stdin
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return 0
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "scale: %v\n", err)
	os.Exit(1)
}
