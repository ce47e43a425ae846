// Command refserver-splice is the benchmark's refserver with an echo that moves the bulk of
// the bytes with splice(2), from the socket into a pipe and from the pipe back into the
// socket, as Go's io.Copy does between two TCP connections: those bytes never enter user
// space. It is written on refserver's public API alone (a Handler, Conn.Fd, Conn.Context),
// as a fork would write it, and measured beside refserver's plain Echo to show what the copy
// costs.
package main

import (
	"golang.org/x/sys/unix"

	"portproof/bench/internal/serve"
	"portproof/refserver"
)

func main() {
	serve.Refserver(serve.Parse(), spliceEcho{})
}

// --8<-- [start:splice]

// spliceEcho echoes like refserver.Echo, and splices what the loop's read left behind.
//
// The loop has read(2) the first bytes into its buffer by the time OnData runs: a Handler
// gets bytes, not the descriptor's readiness. Those bytes are written back as they are. A
// read that came back short emptied the receive queue; a large one may have left more, and
// that rest goes socket -> pipe -> socket with no copy, up to a pipe's worth per call, so
// that one busy connection does not hold its loop longer than one read would.
type spliceEcho struct{}

const (
	// spliceFrom is the read from which more may be waiting. refserver reads 64 KiB at most;
	// a smaller buffer would only mean no splicing, never a lost byte.
	spliceFrom = 32 << 10
	// pipeSize is what F_SETPIPE_SZ asks for, as Go's own splice pipes: 1 MiB
	// (fs.pipe-max-size). It stays within refserver's default Config.MaxOutput (4 MiB), which
	// bounds what Write may keep: at most a pipe's worth goes to it.
	pipeSize    = 1 << 20
	spliceFlags = unix.SPLICE_F_MOVE | unix.SPLICE_F_NONBLOCK
)

// pipe is a connection's pipe, made at its first large read, so that a connection that
// only ever sends a little (or nothing, as the idle scenario's) holds no descriptors for it.
type pipe struct{ r, w int }

func (spliceEcho) OnOpen(*refserver.Conn) {}

func (spliceEcho) OnData(c *refserver.Conn, data []byte) int {
	// refserver runs OnData only while nothing is queued for the peer (backpressure stops
	// reading until the queue is sent), so what is written here directly cannot overtake
	// anything; once the socket is full, the rest goes to Write, which keeps it, and stops
	// reading until it is sent, or meets the socket's error itself and ends the connection.
	if n := writeSome(c.Fd(), data); n < len(data) {
		c.Write(data[n:])
		return len(data)
	}
	if len(data) < spliceFrom {
		return len(data)
	}
	p := pipeOf(c)
	if p == nil {
		return len(data) // no descriptor for a pipe (EMFILE): the loop's next read takes the rest
	}
	in, err := unix.Splice(c.Fd(), nil, p.w, nil, pipeSize, spliceFlags)
	if err != nil || in == 0 {
		// EAGAIN: nothing left. End of stream (0) or an error (ECONNRESET): the socket stays
		// readable, and the loop's next read(2) meets the same and ends the connection.
		return len(data)
	}
	left := int(in)
	for left > 0 {
		out, err := unix.Splice(p.r, nil, c.Fd(), nil, left, spliceFlags)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break // EAGAIN: the send buffer is full; or the peer is gone (EPIPE, ECONNRESET)
		}
		left -= int(out)
	}
	if left > 0 {
		// The pipe must be empty before the next call: what the socket did not take is read
		// out of it, and Write keeps it, or meets the socket's error.
		rest := make([]byte, left)
		for got := 0; got < left; {
			m, err := unix.Read(p.r, rest[got:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return len(data) // not with bytes in a pipe of our own; nothing to keep them for
			}
			got += m
		}
		c.Write(rest)
	}
	return len(data)
}

func (spliceEcho) OnClose(c *refserver.Conn, _ error) {
	if p, ok := c.Context.(*pipe); ok {
		unix.Close(p.r)
		unix.Close(p.w)
	}
}

// pipeOf is c's pipe, made on first use: pipe2(2), non-blocking, and as large as
// F_SETPIPE_SZ allows (an unprivileged user past fs.pipe-user-pages-soft keeps the default
// 64 KiB, and splices less per call).
func pipeOf(c *refserver.Conn) *pipe {
	if p, ok := c.Context.(*pipe); ok {
		return p
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil
	}
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	p := &pipe{r: fds[0], w: fds[1]}
	c.Context = p
	return p
}

// writeSome is write(2) until data is sent or the socket takes no more (EAGAIN) or fails.
func writeSome(fd int, data []byte) int {
	n := 0
	for n < len(data) {
		m, err := unix.Write(fd, data[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break
		}
		n += m
	}
	return n
}

// --8<-- [end:splice]
