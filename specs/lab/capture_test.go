//go:build linux

package lab_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// handshakeSeen is a loopback connection's packets, captured in a sandbox child.
type handshakeSeen struct {
	Client, Listener netip.AddrPort
	Other            uint16             // a second listener's port, connected to as well: outside the filter
	BeforeAccept     []evidence.Segment // captured between connect() and accept()
	Queued           uint32             // the listener's accept queue then (TCP_INFO)
	AfterWrite       []evidence.Segment // after accept, once the client wrote "hello"
	Acked            []evidence.Segment // ReadAll(0) once the client's kernel had the ACK of it
	Accepted         sock.Tuple         // the tuple of the socket accept() returned
}

var captureHandshake = lab.RegisterChild("test.capture", func(loopback string) (handshakeSeen, error) {
	var seen handshakeSeen
	at := netip.AddrPortFrom(netip.MustParseAddr(loopback), 0)
	other, otherAddr, err := lab.ListenOn(at, 8)
	if err != nil {
		return seen, err
	}
	defer unix.Close(other)
	seen.Other = otherAddr.Port()
	l, addr, c, err := lab.ListenCaptured(at, 8)
	if err != nil {
		return seen, err
	}
	defer unix.Close(l)
	defer c.Close()
	seen.Listener = addr

	noise, err := lab.DialTo(otherAddr)
	if err != nil {
		return seen, err
	}
	defer unix.Close(noise)

	client, err := lab.DialTo(seen.Listener)
	if err != nil {
		return seen, err
	}
	defer unix.Close(client)
	if seen.Client, err = sock.LocalAddr(client); err != nil {
		return seen, err
	}
	if seen.BeforeAccept, err = c.Read(3, 2*time.Second); err != nil {
		return seen, err
	}
	q, err := sock.AcceptQueueOf(l)
	if err != nil {
		return seen, err
	}
	seen.Queued = q.Len

	s, err := acceptFD(lab.AcceptOn(l, 5*time.Second))
	if err != nil {
		return seen, err
	}
	defer unix.Close(s)
	if seen.Accepted, err = sock.TupleOf(s); err != nil {
		return seen, err
	}
	if _, err := unix.Write(client, []byte("hello")); err != nil {
		return seen, os.NewSyscallError("write", err)
	}
	if seen.AfterWrite, err = c.Read(1, 2*time.Second); err != nil {
		return seen, err
	}
	// Once the client's send queue is empty (SIOCOUTQ), the server's ACK has crossed lo: it
	// waits in the capture, and ReadAll takes it though it asked for none.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if n, err := unix.IoctlGetInt(client, unix.SIOCOUTQ); err != nil || n == 0 {
			break
		}
	}
	seen.Acked, err = c.ReadAll(0)
	return seen, err
})

func TestCaptureSeesTheHandshakeBeforeAccept(t *testing.T) {
	requireSandbox(t)
	for _, loopback := range []string{"127.0.0.1", "::1"} {
		t.Run(loopback, func(t *testing.T) {
			seen, err := captureHandshake.Run(loopback, lab.SandboxOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range slices.Concat(seen.BeforeAccept, seen.AfterWrite, seen.Acked) {
				t.Log(s.Time.Format("15:04:05.000000"), s)
				if s.Src.Port() == seen.Other || s.Dst.Port() == seen.Other {
					t.Errorf("the filter let through a segment of the other listener's port %d: %s", seen.Other, s)
				}
			}
			c, l := seen.Client, seen.Listener
			want := []evidence.Segment{
				{Src: c, Dst: l, Flags: "SYN", Seq: 0, Ack: 0},
				{Src: l, Dst: c, Flags: "SYN,ACK", Seq: 0, Ack: 1},
				{Src: c, Dst: l, Flags: "ACK", Seq: 1, Ack: 1},
			}
			if err := sameSegments(seen.BeforeAccept, want); err != nil {
				t.Errorf("before accept(): %v", err)
			}
			if seen.Queued != 1 {
				t.Errorf("accept queue before accept(): %d, want the one connection", seen.Queued)
			}
			if err := sameSegments(seen.AfterWrite, []evidence.Segment{{Src: c, Dst: l, Flags: "PSH,ACK", Seq: 1, Ack: 1, Len: 5}}); err != nil {
				t.Errorf("after write: %v", err)
			}
			if err := sameSegments(seen.Acked, []evidence.Segment{{Src: l, Dst: c, Flags: "ACK", Seq: 1, Ack: 6}}); err != nil {
				t.Errorf("ReadAll(0) after the ACK of the write: %v", err)
			}
			if seen.Accepted.Remote != c {
				t.Errorf("accept() returned %s, not the captured client %s", seen.Accepted, c)
			}
		})
	}
}

// sameSegments compares all but the times, which must not go backwards.
func sameSegments(got, want []evidence.Segment) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d segments %v, want %v", len(got), got, want)
	}
	for i := range got {
		if i > 0 && got[i].Time.Before(got[i-1].Time) {
			return fmt.Errorf("segment %d's time %v is before segment %d's", i, got[i].Time, i-1)
		}
		w, g := want[i], got[i]
		g.Time = time.Time{}
		if g != w {
			return fmt.Errorf("segment %d: got %s, want %s", i, g, w)
		}
	}
	return nil
}

func TestCaptureNeedsTheSandbox(t *testing.T) {
	if _, err := lab.StartCapture(80); err == nil || errors.Is(err, unix.EPERM) {
		t.Errorf("StartCapture in the test process: want the sandbox-only refusal, got %v", err)
	}
	// ListenCaptured refuses the same way, and closes the listener it had made.
	before, err := lab.OpenDescriptorNumbers()
	if err != nil {
		t.Fatal(err)
	}
	l, _, c, err := lab.ListenCaptured(netip.MustParseAddrPort("127.0.0.1:0"), 8)
	if err == nil || errors.Is(err, unix.EPERM) || l != -1 || c != nil {
		t.Errorf("ListenCaptured in the test process: %d, %v, %v; want -1 and the sandbox-only refusal", l, c, err)
	}
	if after, err := lab.OpenDescriptorNumbers(); err != nil || !slices.Equal(after, before) {
		t.Errorf("descriptors after ListenCaptured's refusal: %v, before %v (%v)", after, before, err)
	}
}
