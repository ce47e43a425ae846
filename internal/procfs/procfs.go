// Package procfs reads what the tests, the specs and the benchmark want to know from /proc:
// a process's CPU time, memory and descriptors, the kernel's own table of TCP sockets, and
// where a sysctl lives. Each file is parsed here once, for all of them.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"portproof/refserver/sock"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, 100 on every Linux
// architecture Go supports (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// CPU is the process's CPU time so far, user plus system, every thread included, the
// threads that have exited too (utime and stime, fields 14 and 15 of /proc/PID/stat). The
// kernel keeps it in ticks of 10 ms.
func CPU(pid int) (time.Duration, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	d, err := parseCPU(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

func parseCPU(b []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces and parentheses of
	// its own: split after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name", len(f))
	}
	// f[0] is field 3 (state), so field 14 is f[11] and field 15 is f[12].
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q, stime %q", f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// RSS is the process's resident set size in bytes (VmRSS of /proc/PID/status): the pages of
// its memory that are in RAM now, its heap, stacks and the binary's touched pages.
func RSS(pid int) (int64, error) {
	return kBField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
}

// kBField reads, in bytes, the field of a file that lists one "Name:   1234 kB" a line, as
// /proc/PID/status and /proc/meminfo do.
func kBField(path, field string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}

// FDs counts the process's open descriptors by kind, from the links in /proc/PID/fd:
// sockets, pipes, and the rest (eventfds, epoll instances, files).
func FDs(pid int) (sockets, pipes, other int, err error) {
	fds, err := Descriptors(pid)
	for _, fd := range fds {
		switch {
		case fd.Socket():
			sockets++
		case strings.HasPrefix(fd.Target, "pipe:"):
			pipes++
		default:
			other++
		}
	}
	return sockets, pipes, other, err
}

// FD is one of a process's open descriptors: its number, and what its link in /proc/PID/fd
// names ("socket:[1234]", "pipe:[5678]", "/dev/null", "anon_inode:[eventpoll]").
type FD struct {
	Num    int
	Target string
}

// Socket tells whether the descriptor is a socket's.
func (fd FD) Socket() bool { return strings.HasPrefix(fd.Target, "socket:") }

// Descriptors lists the process's open descriptors from /proc/PID/fd, lowest first; one
// closed while the list is read is left out.
func Descriptors(pid int) ([]FD, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var fds []FD
	for _, e := range ents { // os.ReadDir sorts by name: "10" before "9"
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(dir + "/" + e.Name()); err == nil {
			fds = append(fds, FD{Num: n, Target: target})
		}
	}
	slices.SortFunc(fds, func(a, b FD) int { return a.Num - b.Num })
	return fds, nil
}

// Loadavg is the first three fields of /proc/loadavg: how busy the machine was.
func Loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// CPUModel is the first "model name" of /proc/cpuinfo.
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// KernelRelease is uname -r.
func KernelRelease() string {
	b, err := os.ReadFile(sock.SysctlPath("kernel.osrelease"))
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// IO is what /proc/PID/io counts: read-family and write-family system calls (syscr, syscw;
// splice(2) is in neither) and the bytes they moved (rchar, wchar).
type IO struct{ Syscr, Syscw, Rchar, Wchar int64 }

// ReadIO reads /proc/PID/io (it takes the right to ptrace the process: its parent's, root's).
func ReadIO(pid int) (IO, error) {
	var io IO
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return io, err
	}
	fields := map[string]*int64{"syscr": &io.Syscr, "syscw": &io.Syscw, "rchar": &io.Rchar,
		"wchar": &io.Wchar}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			assign(fields, k, v)
		}
	}
	return io, nil
}

// assign parses value into the field that fields has for key, if it has one: the files of
// /proc that are lists of names and numbers, of which a reader wants a few.
func assign(fields map[string]*int64, key, value string) {
	if p, ok := fields[key]; ok {
		*p, _ = strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	}
}

// ContextSwitches sums voluntary and involuntary context switches over the process's
// threads (/proc/PID/task/*/status): a thread that blocks and is woken costs one each
// time. Threads that have exited are not counted; a Go program's rarely exit.
func ContextSwitches(pid int) (int64, error) {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, d.Name()))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n, nil
}
