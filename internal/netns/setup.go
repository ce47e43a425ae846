//go:build linux

package netns

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// What a child does to its own namespace, from inside: the sysctls, then lo up.

// Setup writes sysctls (in name order, each read back), then brings lo up, which gives the
// namespace 127.0.0.0/8 and ::1: 127.0.0.2 and the rest are source addresses at once.
func Setup(sysctls map[string]string) error {
	for _, name := range slices.Sorted(maps.Keys(sysctls)) {
		if err := WriteSysctl(name, sysctls[name]); err != nil {
			return err
		}
	}
	return LoopbackUp()
}

// WriteSysctl writes one setting in this process's namespace and reads it back. Writing is
// safe because /proc/sys/net resolves names in the writer's own namespace, and there the
// kernel shows only what belongs to it: a host-wide net.* setting is absent (ENOENT:
// net.core.netdev_max_backlog, net.ipv4.tcp_mem are registered for the initial namespace
// alone) or a read-only copy (EACCES, even for root: net.core.rmem_max is 0444 outside the
// initial namespace). Only a process in a namespace of its own may call it.
func WriteSysctl(name, value string) error {
	f, err := os.OpenFile(sock.SysctlPath(name), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", name, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// The proc handler validates the value: EINVAL for ip_local_port_range with its low
		// end above the high one, or below net.ipv4.ip_unprivileged_port_start.
		return fmt.Errorf("sysctl %s = %q: %w", name, value, err)
	}
	got, err := sock.Sysctl(name)
	if err != nil {
		return err
	}
	// The kernel writes some values back in its own format: ip_local_port_range with a tab.
	if strings.Join(strings.Fields(got), " ") != strings.Join(strings.Fields(value), " ") {
		return fmt.Errorf("sysctl %s: wrote %q, read back %q", name, value, got)
	}
	return nil
}

// Sysctl is a setting of this process's namespace as a report shows it: its words joined by
// one space ("1024 65535", where the kernel writes a tab), or "?" when it cannot be read.
func Sysctl(name string) string {
	v, err := sock.Sysctl(name)
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(v), " ")
}

// LoopbackUp sets IFF_UP on lo with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls, on any socket of
// the namespace. A new network namespace has lo alone, and down: connect(2) to 127.0.0.1
// fails with ENETUNREACH until it is up. Bringing it up is also what gives it addresses: the
// kernel adds 127.0.0.1/8 (inetdev_event, NETDEV_UP) and ::1/128 (addrconf, for a loopback
// device) by itself. SIOCSIFFLAGS needs CAP_NET_ADMIN over the namespace: EPERM otherwise.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCGIFFLAGS lo", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return os.NewSyscallError("ioctl SIOCSIFFLAGS lo up", err)
	}
	return nil
}
