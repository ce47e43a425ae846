package evidence

import "fmt"

// Machine is the kernel the proofs ran on, as it described itself.
type Machine struct {
	Kernel string `json:"kernel"` // uname(2) release: "6.18.44"
	Arch   string `json:"arch"`   // uname(2) machine: "x86_64"
	Date   string `json:"date"`   // the day of the run, local time: "2026-12-01"
	CPUs   int    `json:"cpus"`   // the CPUs this process may run on
	// Sysctls are lab.MachineSysctls by name; "unknown" where this kernel has no such file.
	Sysctls map[string]string `json:"sysctls"`
	// NoFile is RLIMIT_NOFILE as a program started from this one gets it, "soft / hard". The Go
	// runtime raised this process's own soft limit at start-up and gives the programs it starts
	// the original back, so a shell tells the limit a reader's programs really begin with.
	NoFile string `json:"nofile"`
}

// PortRange is the range the kernel picks a source port from when connect(2) runs on an
// unbound socket, and a port for bind(2) to port 0.
type PortRange struct {
	Low    uint16 `json:"low"`
	High   uint16 `json:"high"`
	Size   int    `json:"size"`   // High-Low+1: 28,232 with the default 32768-60999
	Sysctl string `json:"sysctl"` // where it was read: net.ipv4.ip_local_port_range
}

// Contains tells whether p is inside the range, both ends included.
func (r PortRange) Contains(p uint16) bool { return r.Low <= p && p <= r.High }

func (r PortRange) String() string { return fmt.Sprintf("%d-%d (%d ports)", r.Low, r.High, r.Size) }
