package testkit

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestDial: the connection Dial returns is to the address asked, and its deadline is set: a
// read that nothing answers fails with a timeout once within has passed. A port nothing
// listens on is an error, not a wait.
func TestDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	at := ln.Addr().(*net.TCPAddr).AddrPort()
	c, err := Dial(at, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.RemoteAddr().(*net.TCPAddr).AddrPort(); got != at {
		t.Errorf("connected to %s, want %s", got, at)
	}
	start := time.Now()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a read nothing answers: %v, want the deadline's timeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the read gave up after %v", took)
	}
	ln.Close()
	if c, err := Dial(at, time.Second); err == nil {
		c.Close()
		t.Errorf("Dial to %s, closed: connected", at)
	}
}
