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
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"portproof/bench/internal/page"
	"portproof/internal/netns"
)

type config struct {
	conns, servers, clients int
	addr                    netip.AddrPort
	refserver               string
	page                    string
	timeout                 time.Duration
	threads                 int
}

const envResult = "PORTPROOF_SCALE_RESULT"

// backlog is each server's listen(2) backlog, and the namespace's net.core.somaxconn.
const backlog = 16384

func main() {
	cfg := &config{}
	var addr string
	client := flag.Bool("client", false, "internal: run as one client process")
	src := flag.String("src", "", "internal (-client): source addresses, comma-separated")
	n := flag.Int("n", 0, "internal (-client): connections to open")
	// The defaults, for 100,000 on 2 CPUs: 6 servers and 6 clients hold about 16,700
	// descriptors each, under RLIMIT_NOFILE's 20,000 with room for SO_REUSEPORT's uneven
	// spread; 2 threads a client, 12 in all, get ahead of the servers enough that a server's
	// epoll_wait often finds several connections to accept (a third less of the servers' CPU
	// than with 1 thread), and more would only queue for the 2 CPUs.
	flag.IntVar(&cfg.conns, "conns", 100000, "simultaneous connections to open")
	flag.IntVar(&cfg.servers, "servers", 6, "refserver processes sharing the port (SO_REUSEPORT)")
	flag.IntVar(&cfg.clients, "clients", 6, "client processes")
	flag.IntVar(&cfg.threads, "threads", 2, "OS threads per client process, each making blocking connects")
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
		os.Exit(runClient(cfg.addr, *src, *n, cfg.threads))
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
	Threads                      int // per client process
	Addr                         string
	PortRange                    string
	HalfRange                    int
	Sources                      int
	PerSourceMax                 int     // most connections from one source address (kernel count)
	LoadAvg                      string  // /proc/loadavg as the establishment began
	EstablishSeconds, Rate       float64 // socket, bind and connect alone, all of them
	ClientCPUSeconds             float64 // the clients' CPU time while establishing
	ServerCPUSeconds             float64 // the servers'
	ListenOverflows, SynRetrans  int64   // TcpExt counters' growth while establishing
	Echoed, EchoFailures         int     // connections that echoed a byte, after
	EchoSeconds                  float64
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

// inside is the run itself, in the namespace: the servers, then the clients' connections,
// the kernel's count of them and what they cost, the teardown, and the half-range
// experiment. It exits 1 on a failure; the processes it started are killed on any way out.
func inside(cfg *config) int {
	// A connect(2) whose SYN is lost (a full accept queue) waits for its retransmissions:
	// 1, 2 and 4 s with two retries, instead of the default six's two minutes in all. Both
	// settings are the namespace's own.
	if err := netns.Setup(map[string]string{
		"net.ipv4.tcp_syn_retries": "2",
		"net.core.somaxconn":       strconv.Itoa(backlog),
	}); err != nil {
		fatal(err)
	}
	r := &run{cfg: cfg, res: newResult(cfg), bin: refserverBinary(cfg)}
	defer r.killAll()
	if err := r.plan(); err != nil {
		fatal(err)
	}
	if err := r.startServers(); err != nil {
		r.killAll()
		fatal(err)
	}
	before := r.memory()
	pr, err := r.establish()
	if err == nil {
		err = r.echo(pr)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "scale: %v; tearing down\n", err)
		return 1
	}
	time.Sleep(time.Second) // let the kernel's slab caches settle
	// Memory first: reading /proc/net/tcp and /proc/PID/fd below fills caches of their own
	// (proc_inode_cache, dentry).
	after := r.memory()
	if err := r.census(); err != nil {
		fatal(err)
	}
	r.res.costs(before, after)
	r.res.printCensus()
	r.teardown()
	if err := r.halfRange(); err != nil {
		fatal(err)
	}
	return r.verdict()
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

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "scale: %v\n", err)
	os.Exit(1)
}
