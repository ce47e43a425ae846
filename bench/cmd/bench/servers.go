package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The servers under test, in the order of the tables. Each is a binary of its own, started
// fresh for every measurement: /proc/PID/stat then counts that server's CPU time alone, and
// the idle scenario's memory starts from a process that has served nothing.
// refserver-splice is refserver with a Handler of its own that echoes through splice(2);
// c-epoll is the limit, refserver's design in C with no runtime (servers/c-epoll/echo.c).
var serverNames = []string{"c-epoll", "gonet", "gnet", "refserver", "refserver-splice"}

var serverLabels = map[string]string{
	"gonet":            "Go net",
	"gnet":             "gnet",
	"refserver":        "refserver",
	"refserver-splice": "refserver, splice",
	"c-epoll":          "C epoll (the limit)",
}

// label is how the tables name a server.
func label(name string) string {
	if l := serverLabels[name]; l != "" {
		return l
	}
	if l := redisLabels[name]; l != "" {
		return l
	}
	return name
}

type server struct {
	name    string
	profile bool // asked for profiles: the idle scenario has the heap written while it holds
	pid     int
	addr    netip.AddrPort
	cmd     *exec.Cmd
	log     *os.File // what it printed, both streams, for a failure's message
	dir     string   // a directory of its own, removed when it stops (redis-server's -dir)
}

// startServer runs bin/<name> on 127.0.0.1:0 and waits for its "listening on ADDR" line.
// With profile set, a timed scenario's server writes a CPU profile to profile+".cpu.prof",
// and the idle scenario's a heap profile to profile+".heap.prof" (every allocation
// recorded: not to be timed).
func startServer(cfg *config, name, profile string, heap bool) (*server, error) {
	args := []string{"-addr", "127.0.0.1:0", "-loops", fmt.Sprint(cfg.procs)}
	switch {
	case profile != "" && heap:
		args = append(args, "-memprofile", profile+".heap.prof")
	case profile != "":
		args = append(args, "-cpuprofile", profile+".cpu.prof")
	}
	s, err := launch(cfg, name, filepath.Join(cfg.bin, name), args, listening)
	if s != nil {
		s.profile = profile != ""
	}
	return s, err
}

// listening finds the address in the benchmark servers' "listening on ADDR (pid ...)".
func listening(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "listening on ")
	if f := strings.Fields(rest); ok && len(f) > 0 {
		return f[0], true
	}
	return "", false
}

// launch starts path with args and waits until ready finds the address the server listens
// on in a line of its output, stdout or stderr (servers not written for the benchmark
// announce themselves in their own words, on either).
func launch(cfg *config, name, path string, args []string, ready func(line string) (addr string, ok bool)) (*server, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", cfg.procs))
	logf, err := os.CreateTemp("", "portproof-bench-"+name+"-*.log")
	if err != nil {
		return nil, err
	}
	os.Remove(logf.Name()) // kept open for reading back on failure, gone on exit
	pr, pw, err := os.Pipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	pw.Close() // the server's now: the reader below ends when the server does
	if err != nil {
		pr.Close()
		logf.Close()
		return nil, fmt.Errorf("%s: %w (make bench builds the servers into bench/bin)", name, err)
	}
	s := &server{name: name, pid: cmd.Process.Pid, cmd: cmd, log: logf}
	lines := make(chan string, 1)
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			logf.WriteString(sc.Text() + "\n")
			if a, ok := ready(sc.Text()); ok && !found {
				found = true
				lines <- a
			}
		}
	}()
	select {
	case a := <-lines:
		if s.addr, err = netip.ParseAddrPort(a); err != nil {
			s.stop()
			return nil, fmt.Errorf("%s: listening on %q: %w", name, a, err)
		}
		return s, nil
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s: not listening within 10s; it said: %s", name, s.stderr())
	}
}

// stop ends the server by SIGTERM (so that a CPU profile is written), then SIGKILL.
func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.log.Close()
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}

// stderr is the start of what the server printed.
func (s *server) stderr() string {
	b := make([]byte, 4096)
	n, _ := s.log.ReadAt(b, 0)
	return strings.TrimSpace(string(b[:n]))
}

// alive reports an early exit, with what the server said.
func (s *server) alive() error {
	if err := syscall.Kill(s.pid, 0); err != nil {
		return fmt.Errorf("%s (pid %d) exited: %s", s.name, s.pid, s.stderr())
	}
	return nil
}
