//go:build linux

package lab

import (
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// EntryMachine names the report entry that says whose kernel answered: the suite records it
// once, before any spec (specs_suite_test.go), and the chapters' "on your machine" sentences
// and the proof page's table are written from it.
const EntryMachine = "machine"

// MachineSysctls are the host's settings the chapters quote, read from /proc/sys as the
// suite starts. A spec that changes one does it in a sandbox of its own, so these stay the
// host's.
var MachineSysctls = []string{
	"net.core.somaxconn",
	"net.ipv4.ip_local_port_range",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.tcp_syn_linear_timeouts",
	"net.ipv4.tcp_abort_on_overflow",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_tw_reuse",
	"net.ipv6.bindv6only",
	"fs.nr_open",
	"fs.file-max",
}

// Machine is the kernel the proofs ran on, as it described itself.
type Machine struct {
	Kernel string `json:"kernel"` // uname(2) release: "6.18.44"
	Arch   string `json:"arch"`   // uname(2) machine: "x86_64"
	Date   string `json:"date"`   // the day of the run, local time: "2026-12-01"
	CPUs   int    `json:"cpus"`   // the CPUs this process may run on
	// Sysctls are MachineSysctls by name; "unknown" where this kernel has no such file.
	Sysctls map[string]string `json:"sysctls"`
	// NoFile is RLIMIT_NOFILE as a program started from this one gets it, "soft / hard". The Go
	// runtime raised this process's own soft limit at start-up and gives the programs it starts
	// the original back, so a shell tells the limit a reader's programs really begin with.
	NoFile string `json:"nofile"`
}

// ReadMachine asks the kernel who it is: uname(2), the CPUs of sched_getaffinity(2), and
// MachineSysctls from /proc/sys.
func ReadMachine() (Machine, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return Machine{}, err
	}
	m := Machine{
		Kernel:  unix.ByteSliceToString(u.Release[:]),
		Arch:    unix.ByteSliceToString(u.Machine[:]),
		Date:    time.Now().Format(time.DateOnly),
		CPUs:    runtime.NumCPU(),
		Sysctls: map[string]string{},
		NoFile:  "unknown",
	}
	for _, name := range MachineSysctls {
		v, err := sock.Sysctl(name)
		if err != nil {
			v = "unknown"
		}
		m.Sysctls[name] = strings.Join(strings.Fields(v), " ")
	}
	if out, err := exec.Command("sh", "-c", `echo "$(ulimit -Sn) / $(ulimit -Hn)"`).Output(); err == nil {
		m.NoFile = strings.TrimSpace(string(out))
	}
	return m, nil
}
