//go:build linux

package refserver

import (
	"flag"
	"fmt"
	"io"
	"testing"
	"time"
)

// FuzzEcho drives one echo server, started once, with clients whose conduct is decoded from
// the fuzz input (see decodeScript): how they cut what they send, when they pause, how they
// read, and when they half-close. Whatever the script, a client must read back exactly what
// it sent, then end of stream. The seed corpus, in testdata/fuzz/FuzzEcho, runs with every
// `go test`; `go test -fuzz FuzzEcho ./refserver` looks for more.
func FuzzEcho(f *testing.F) {
	// Under -fuzz the engine starts goroutines of its own (a signal handler) once this has
	// begun: the leak check is for the corpus run of a plain go test.
	if fuzz := flag.Lookup("test.fuzz"); fuzz == nil || fuzz.Value.String() == "" {
		noLeaks(f)
	}
	srv := startServer(f, Config{Handler: Echo{}, Loops: 2})
	f.Fuzz(func(t *testing.T, input []byte) {
		sc := decodeScript(input)
		c, err := dialE(srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		werr := make(chan error, 1)
		go func() {
			var off int
			for _, st := range sc.writes {
				if st.pause > 0 {
					time.Sleep(st.pause)
				}
				p := make([]byte, st.n)
				for i := range p {
					p[i] = patternByte(off + i)
				}
				if _, err := c.Write(p); err != nil {
					werr <- fmt.Errorf("write %d bytes at %d: %w", st.n, off, err)
					return
				}
				off += st.n
			}
			time.Sleep(sc.closePause)
			werr <- c.CloseWrite()
		}()
		var got int
		buf := make([]byte, 64<<10)
		for i := 0; ; i++ {
			n := len(buf)
			if i < len(sc.reads) {
				time.Sleep(sc.reads[i].pause)
				n = sc.reads[i].n
			}
			m, err := c.Read(buf[:n])
			for j := range m {
				if buf[j] != patternByte(got+j) {
					t.Fatalf("byte %d of the echo is %#x; sent %#x (script %v)", got+j, buf[j], patternByte(got+j), sc)
				}
			}
			got += m
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("read after %d of %d bytes: %v (script %v)", got, sc.total, err, sc)
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if got != sc.total {
			t.Fatalf("echoed %d bytes, then end of stream; sent %d (script %v)", got, sc.total, sc)
		}
	})
}

// patternByte is the byte a fuzz client sends at offset i of its stream: a multiplicative
// hash, so that a lost, repeated or reordered piece shows at once.
func patternByte(i int) byte { return byte(uint32(i) * 2654435761 >> 24) }

// step is a write or a read of up to n bytes, after a pause.
type step struct {
	n     int
	pause time.Duration
}

// script is a client's conduct: its writes (then its half-close) and its reads (then reads
// of 64 KiB to end of stream), done by two goroutines at once.
type script struct {
	writes, reads []step
	closePause    time.Duration // between the last write and the half-close
	total         int           // bytes written
}

// Bounds on a script, so that any input runs in well under a second.
const (
	scriptBytes = 1 << 20
	scriptPause = 20 * time.Millisecond // per side
)

// decodeScript reads the input two bytes a step, op and arg; size is (arg+1) << (op>>2 & 7),
// 1 byte to 32 KiB:
//
//	op&3 == 0  write size bytes
//	op&3 == 1  the writer pauses (arg & 7) ms
//	op&3 == 2  the reader pauses (op >> 5) ms, then reads at most size bytes
//	op&3 == 3  half-close now (shutdown SHUT_WR): later writes are not made
//
// A script without a half-close ends with one. A trailing odd byte is ignored.
func decodeScript(in []byte) script {
	var sc script
	var wpause, rpause, pending time.Duration
	closed := false
	for ; len(in) >= 2; in = in[2:] {
		op, arg := in[0], int(in[1])
		size := (arg + 1) << (op >> 2 & 7)
		switch op & 3 {
		case 0:
			if !closed && sc.total+size <= scriptBytes {
				sc.writes = append(sc.writes, step{n: size, pause: pending})
				sc.total += size
				pending = 0
			}
		case 1:
			if d := time.Duration(arg&7) * time.Millisecond; !closed && wpause+d <= scriptPause {
				wpause += d
				pending += d
			}
		case 2:
			d := time.Duration(op>>5) * time.Millisecond
			if rpause+d > scriptPause {
				d = 0
			}
			rpause += d
			sc.reads = append(sc.reads, step{n: size, pause: d})
		case 3:
			closed = true
		}
	}
	sc.closePause = pending
	return sc
}

func (s script) String() string {
	return fmt.Sprintf("%d writes of %d bytes in all, %d reads", len(s.writes), s.total, len(s.reads))
}
