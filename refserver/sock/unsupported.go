//go:build !linux

package sock

// sock is written on Linux system calls (accept4, TCP_INFO, /proc) and has no port to other
// systems; this undefined name makes the build say so instead of failing on a missing
// unix.TCP_INFO.
const _ = sock_needs_Linux_it_uses_accept4_and_TCP_INFO
