package main

import (
	"fmt"

	"portproof/specs/evidence"
)

// setting is one line of the page's table of what the proofs ran on.
type setting struct {
	Name, Value, Note string
}

// settingNotes say what each setting of the machine entry governs, in the order shown.
var settingNotes = []struct{ name, note string }{
	{"net.core.somaxconn", "the cap on every listen() backlog (chapter 4)"},
	{"net.ipv4.ip_local_port_range", "where connect() picks source ports (chapters 2, 3)"},
	{"net.ipv4.tcp_syncookies", "1: SYN cookies only when the SYN queue overflows"},
	{"net.ipv4.tcp_syn_linear_timeouts", "how many SYN retransmissions keep the initial 1 s timeout before it doubles; unknown where the kernel lacks it (chapter 4)"},
	{"net.ipv4.tcp_abort_on_overflow", "0: a full accept queue drops, never resets"},
	{"net.ipv4.tcp_fin_timeout", "how long an orphaned connection may wait in FIN_WAIT2"},
	{"net.ipv4.tcp_tw_reuse", "whether connect() may reuse a 4-tuple still in TIME_WAIT (2: for loopback only)"},
	{"net.ipv6.bindv6only", "0: an AF_INET6 socket takes IPv4 clients too unless it sets IPV6_V6ONLY"},
	{"fs.nr_open", "the highest RLIMIT_NOFILE may go"},
	{"fs.file-max", "descriptors for the whole system"},
}

// machineOf finds the suite's "machine" entry, recorded before its first spec: the kernel as
// it described itself when the proofs began, so that the page says what the proofs ran on,
// not what the machine that generates the page looks like later.
func machineOf(r suiteReport) (evidence.Machine, error) {
	for _, s := range r.SpecReports {
		if es := s.entries(evidence.EntryMachine); len(es) > 0 {
			var m evidence.Machine
			if err := es[0].decode(&m); err != nil {
				return evidence.Machine{}, fmt.Errorf("the report's machine entry: %w", err)
			}
			return m, nil
		}
	}
	return evidence.Machine{}, fmt.Errorf("the report has no machine entry: it was written by an older suite (run go test ./specs/ again)")
}

// settings is the page's table: the kernel, then each setting with what it governs.
func settings(m evidence.Machine) []setting {
	env := []setting{{"kernel (uname -r)", m.Kernel, fmt.Sprintf("%s, %d CPUs, proofs run on %s", m.Arch, m.CPUs, m.Date)}}
	for _, s := range settingNotes {
		v, ok := m.Sysctls[s.name]
		if !ok {
			v = "unknown"
		}
		env = append(env, setting{s.name, v, s.note})
	}
	return append(env, setting{"RLIMIT_NOFILE (soft / hard)", m.NoFile,
		"descriptors per process (chapters 3, 5); a Go program raises its soft limit to hard-1 at start-up"})
}
