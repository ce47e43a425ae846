//go:build linux

package lab

import (
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/evidence"
)

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

// ReadMachine asks the kernel who it is: uname(2), the CPUs of sched_getaffinity(2), and
// MachineSysctls from /proc/sys.
func ReadMachine() (evidence.Machine, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return evidence.Machine{}, err
	}
	m := evidence.Machine{
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
