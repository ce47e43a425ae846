//go:build linux

package sock

import (
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// AcceptQueue is a listener's queue of finished handshakes that no accept() has taken yet.
type AcceptQueue struct {
	Len uint32 // connections waiting now (sk_ack_backlog)
	Max uint32 // the limit the kernel applies: min(backlog, net.core.somaxconn) (sk_max_ack_backlog)
}

// --8<-- [start:acceptqueue]

// AcceptQueueOf reads a listener's accept queue from TCP_INFO. On a socket in LISTEN state
// the kernel reuses two fields that mean something else on a connection: tcpi_unacked is
// the queue's length and tcpi_sacked its maximum (tcp_get_info in net/ipv4/tcp.c). It is the
// same pair that `ss -lnt` prints as Recv-Q and Send-Q.
func AcceptQueueOf(listener int) (AcceptQueue, error) {
	ti, err := unix.GetsockoptTCPInfo(listener, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return AcceptQueue{}, os.NewSyscallError("getsockopt TCP_INFO", err)
	}
	return AcceptQueue{Len: ti.Unacked, Max: ti.Sacked}, nil
}

// --8<-- [end:acceptqueue]

// TCPState is the kernel's state of a TCP socket (tcpi_state): "LISTEN", "ESTABLISHED",
// "SYN_SENT", and so on, as ss(8) spells them.
func TCPState(fd int) (string, error) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return "", os.NewSyscallError("getsockopt TCP_INFO", err)
	}
	if int(ti.State) < len(tcpStates) {
		return tcpStates[ti.State], nil
	}
	return "UNKNOWN", nil
}

// tcpStates follows enum tcp_state in include/net/tcp_states.h; index 0 is unused.
var tcpStates = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

// --8<-- [start:descriptors]

// OpenDescriptors counts the process's open file descriptors, every socket included, from
// /proc/self/fd. It needs one descriptor itself, so under EMFILE it fails too.
func OpenDescriptors() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	return len(names) - 1, nil // less the descriptor that reads the directory
}

// DescriptorLimit is RLIMIT_NOFILE: the soft limit, where open, socket and accept4 start
// failing with EMFILE, and the hard limit, the most an unprivileged process may raise the
// soft one to. At start-up the Go runtime raises its soft limit to hard-1 when it was lower
// (syscall/rlimit.go), and gives children started with os/exec the original one back.
func DescriptorLimit() (soft, hard uint64, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, os.NewSyscallError("getrlimit", err)
	}
	return rl.Cur, rl.Max, nil
}

// --8<-- [end:descriptors]

// Sysctl reads a kernel setting by its sysctl name ("net.core.somaxconn") from /proc/sys.
// Settings under net. are per network namespace: the value is the calling thread's.
func Sysctl(name string) (string, error) {
	b, err := os.ReadFile(SysctlPath(name))
	return strings.TrimSpace(string(b)), err
}

// SysctlPath is the file of the setting a sysctl name names: "net.core.somaxconn" is
// /proc/sys/net/core/somaxconn. Under /proc/sys/net the file shows, and writes, the setting
// of the network namespace of the thread that opens it.
func SysctlPath(name string) string { return "/proc/sys/" + strings.ReplaceAll(name, ".", "/") }
