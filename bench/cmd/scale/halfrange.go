package main

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// halfRange is the experiment behind the rule the run follows: from one source address to
// one destination, connect(2) finds a port at once while fewer than half the ephemeral
// range is in use toward it, and slows down past half. Linux's __inet_hash_connect tries
// the ports of one parity first (even, with the default range), the other left to bind();
// once they are all taken toward this destination, every connect walks all of them, a
// hash-bucket lookup and an established-table check each, before it tries an odd port.
//
// One refserver holds the server ends; this process holds the client ends, at most n, so
// both stay under the descriptor limit. Each connect is timed alone (blocking socket).
type halfBlock struct {
	From, To int
	MeanUS   float64 // mean time of one connect(2), µs
}

// --8<-- [start:halfrange]
func halfRange(dst netip.AddrPort, src netip.Addr, n, block int) ([]halfBlock, error) {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	var blocks []halfBlock
	var spent time.Duration
	for i := range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return blocks, err
		}
		fds = append(fds, fd)
		// The source address alone: connect picks the port for this destination.
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			return blocks, err
		}
		t := time.Now()
		err = unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
		spent += time.Since(t)
		if err != nil {
			return blocks, fmt.Errorf("connect %d: %w", i+1, err)
		}
		if (i+1)%block == 0 {
			perConnect := float64(spent.Microseconds()) / float64(block)
			blocks = append(blocks, halfBlock{i + 1 - block, i + 1, perConnect})
			spent = 0
		}
	}
	return blocks, nil
}

// --8<-- [end:halfrange]
