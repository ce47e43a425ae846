package main

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// setting is one line of the page's table of what the proofs ran on.
type setting struct {
	Name, Value, Note string
}

// readEnv reads the kernel's release and the settings the chapters talk about, live, from
// /proc: the report itself does not carry them, and the page is generated on the machine
// that ran the proofs, right after them (make docs).
func readEnv() []setting {
	sys := func(name string) string {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
		if err != nil {
			return "unknown"
		}
		return strings.Join(strings.Fields(string(b)), " ")
	}
	return []setting{
		{"kernel (uname -r)", sys("kernel.osrelease"), runtime.GOOS + "/" + runtime.GOARCH},
		{"net.core.somaxconn", sys("net.core.somaxconn"), "the cap on every listen() backlog (chapter 4)"},
		{"net.ipv4.ip_local_port_range", sys("net.ipv4.ip_local_port_range"), "where connect() picks source ports (chapters 2, 3)"},
		{"net.ipv4.tcp_syncookies", sys("net.ipv4.tcp_syncookies"), "1: SYN cookies only when the SYN queue overflows"},
		{"net.ipv4.tcp_syn_linear_timeouts", sys("net.ipv4.tcp_syn_linear_timeouts"), "how many SYN retransmissions keep the initial 1 s timeout before it doubles; unknown where the kernel lacks it (chapter 4)"},
		{"net.ipv4.tcp_abort_on_overflow", sys("net.ipv4.tcp_abort_on_overflow"), "0: a full accept queue drops, never resets"},
		{"RLIMIT_NOFILE (soft / hard)", nofile(), "descriptors per process (chapters 3, 5); a Go program raises its soft limit to hard-1 at start-up"},
		{"fs.nr_open", sys("fs.nr_open"), "the highest RLIMIT_NOFILE may go"},
		{"fs.file-max", sys("fs.file-max"), "descriptors for the whole system"},
	}
}

// nofile is RLIMIT_NOFILE as a process started from here gets it. The Go runtime raised this
// process's own soft limit at start-up and restores the original for the programs it starts,
// so a shell tells the limit a reader's programs really begin with.
func nofile() string {
	out, err := exec.Command("sh", "-c", `echo "$(ulimit -Sn) / $(ulimit -Hn)"`).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
