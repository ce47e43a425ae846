//go:build linux

package procfs

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseCPU(t *testing.T) {
	// A command name with spaces and a parenthesis of its own; utime 250, stime 50 ticks.
	stat := "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 800 0 0 0 250 50 0 0 20 0 3 0 12345 1000000 200 18446744073709551615"
	if d, err := parseCPU([]byte(stat)); d != 3*time.Second || err != nil {
		t.Errorf("parseCPU = %v, %v; want 3s", d, err)
	}
	for _, bad := range []string{"4242 no parentheses", "4242 (short) S 1 2 3"} {
		if _, err := parseCPU([]byte(bad)); err == nil {
			t.Errorf("parseCPU(%q) took it", bad)
		}
	}
	if d, err := CPU(os.Getpid()); err != nil || d < 0 {
		t.Errorf("CPU(self) = %v, %v", d, err)
	}
}

// The table as a little-endian kernel prints it: 127.0.0.1:7000 listening, a connection to
// it from 127.0.0.2, and over IPv6 ::1 and ::ffff:127.0.0.1.
const (
	tcp4Table = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1B58 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1B58 0200007F:8A3C 01 00000000:00000000 00:00000000 00000000     0        0 1235 1 0000000000000000 20 4 30 10 -1
`
	tcp6Table = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000001000000:D431 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1
   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000200007F:D432 06 00000000:00000000 00:00000000 00000000     0        0 0 3 0
`
)

func TestEachTCPParses(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the fixtures are a little-endian kernel's")
	}
	for _, tc := range []struct {
		table string
		want  []TCPRow
	}{
		{tcp4Table, []TCPRow{
			{netip.MustParseAddrPort("127.0.0.1:7000"), netip.MustParseAddrPort("0.0.0.0:0"), TCPListen},
			{netip.MustParseAddrPort("127.0.0.1:7000"), netip.MustParseAddrPort("127.0.0.2:35388"), TCPEstablished},
		}},
		{tcp6Table, []TCPRow{
			{netip.MustParseAddrPort("[::1]:8080"), netip.MustParseAddrPort("[::1]:54321"), TCPEstablished},
			{netip.MustParseAddrPort("[::ffff:127.0.0.1]:8080"), netip.MustParseAddrPort("[::ffff:127.0.0.2]:54322"), TCPTimeWait},
		}},
	} {
		var got []TCPRow
		if err := eachTCP(strings.NewReader(tc.table), func(r TCPRow) { got = append(got, r) }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("got %v, want %v", got, tc.want)
		}
	}
	if err := eachTCP(strings.NewReader("header\n   0: 0100007F 00000000:0000 0A\n"), func(TCPRow) {}); err == nil {
		t.Error("a row without a port was taken")
	}
}

// TestTCPTableErrorsQuoteTheRow: both readers of the table share its row loop; a row that
// does not parse is named in the error, and a row too short for the reader is left out.
func TestTCPTableErrorsQuoteTheRow(t *testing.T) {
	const bad = "   0: 0100007F:1B58 0100007F:ZZZZ 01 00000000:00000000 00:00000000"
	table := "header\n   9: short row\n" + bad + "\n"
	for name, err := range map[string]error{
		"eachTCP":      eachTCP(strings.NewReader(table), func(TCPRow) {}),
		"eachTCPTimed": eachTCPTimed(strings.NewReader(table), func(TCPTimed) {}),
	} {
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v; want an error quoting %q", name, err, bad)
		}
	}
	var rows int
	if err := eachTCP(strings.NewReader("header\n   9: short row\n"), func(TCPRow) { rows++ }); err != nil || rows != 0 {
		t.Errorf("a row of three fields: %d rows, %v; want it left out", rows, err)
	}
}

// TestEachTCPFindsAListener: the kernel's own table holds a listener this process opened,
// over each family this machine has.
func TestEachTCPFindsAListener(t *testing.T) {
	for _, tc := range []struct {
		domain int
		at     string
	}{{unix.AF_INET, "127.0.0.1:0"}, {unix.AF_INET6, "[::1]:0"}} {
		ln, err := net.Listen("tcp", tc.at)
		if err != nil {
			t.Logf("%s: %v", tc.at, err)
			continue
		}
		defer ln.Close()
		at := ln.Addr().(*net.TCPAddr).AddrPort()
		found := false
		if err := EachTCP(tc.domain, func(r TCPRow) { found = found || (r.Local == at && r.State == TCPListen) }); err != nil {
			t.Fatal(err)
		}
		if !found {
			t.Errorf("no LISTEN row for %s", at)
		}
	}
}

// TestKBField: RSS and Meminfo read their "Name:   N kB" line with one parser.
func TestKBField(t *testing.T) {
	path := t.TempDir() + "/status"
	status := "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n"
	if err := os.WriteFile(path, []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := kBField(path, "VmRSS"); n != 1234<<10 || err != nil {
		t.Errorf("kBField VmRSS = %d, %v; want %d", n, err, 1234<<10)
	}
	if _, err := kBField(path, "VmSwap"); err == nil || !strings.Contains(err.Error(), "no VmSwap") {
		t.Errorf("a field the file lacks: %v", err)
	}
	if n, err := RSS(os.Getpid()); n <= 0 || err != nil {
		t.Errorf("RSS(self) = %d, %v", n, err)
	}
	if n := Meminfo("MemTotal"); n <= 0 {
		t.Errorf("Meminfo(MemTotal) = %d", n)
	}
}

// TestDescriptors: the process's own table lists a pipe and a socket it opened, by number,
// lowest first, and FDs counts them by kind.
func TestDescriptors(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if s >= 0 {
			unix.Close(s)
		}
	}()
	sockets0, pipes0, _, err := FDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	fds, err := Descriptors(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(fds, func(a, b FD) int { return a.Num - b.Num }) {
		t.Errorf("not lowest first: %v", fds)
	}
	byNum := map[int]FD{}
	for _, fd := range fds {
		byNum[fd.Num] = fd
	}
	if fd := byNum[s]; !fd.Socket() {
		t.Errorf("descriptor %d, a socket: %+v", s, fd)
	}
	for _, p := range []*os.File{r, w} {
		if fd := byNum[int(p.Fd())]; fd.Socket() || !strings.HasPrefix(fd.Target, "pipe:") {
			t.Errorf("descriptor %d, a pipe's end: %+v", p.Fd(), fd)
		}
	}
	unix.Close(s)
	s = -1
	if sockets, pipes, _, err := FDs(os.Getpid()); err != nil || sockets != sockets0-1 || pipes != pipes0 {
		t.Errorf("FDs after closing the socket: %d sockets, %d pipes, %v; want %d and %d",
			sockets, pipes, err, sockets0-1, pipes0)
	}
}

// TestReadIO: ten read(2) calls of this process on a pipe show in its syscr, and the bytes
// they moved in rchar.
func TestReadIO(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	before, err := ReadIO(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	for range 10 {
		unix.Write(p[1], buf)
		if n, err := unix.Read(p[0], buf); n != len(buf) || err != nil {
			t.Fatalf("read = %d, %v", n, err)
		}
	}
	after, err := ReadIO(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Other threads of the test binary read too (the ReadFile of /proc/PID/io itself): at
	// least, not exactly.
	if d := after.Syscr - before.Syscr; d < 10 {
		t.Errorf("syscr grew by %d over ten reads", d)
	}
	if d := after.Rchar - before.Rchar; d < 1000 {
		t.Errorf("rchar grew by %d over ten reads of 100 bytes", d)
	}
	if d := after.Syscw - before.Syscw; d < 10 {
		t.Errorf("syscw grew by %d over ten writes", d)
	}
}

// TestReadSockstat: with a listener open, /proc/net/sockstat counts a TCP socket in use.
func TestReadSockstat(t *testing.T) {
	before, err := ReadSockstat()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	during, err := ReadSockstat()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Other processes of the namespace open and close sockets too, so no exact count: the
	// listener is in use (a parser that read nothing gives 0), and the sockets allocated
	// (in every namespace) cover those in use.
	if during.InUse < 1 || during.Alloc < during.InUse {
		t.Errorf("sockstat with a listener: %+v (before: %+v)", during, before)
	}
}
