//go:build !linux

package refserver

// refserver is written on Linux system calls (epoll, accept4, TCP_INFO) and has no port to
// other systems; this undefined name makes the build say so instead of failing on a missing
// unix.EpollWait.
const _ = refserver_needs_Linux_it_uses_epoll_accept4_and_TCP_INFO
