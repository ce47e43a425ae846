package procfs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TCPRow is one socket of /proc/net/tcp or tcp6: its two ends and the state (01 ESTABLISHED,
// 0A LISTEN, 06 TIME_WAIT, ... as in include/net/tcp_states.h).
type TCPRow struct {
	Local, Remote netip.AddrPort
	State         uint8
}

// TCP states, as /proc/net/tcp numbers them.
const (
	TCPEstablished = 0x01
	TCPTimeWait    = 0x06
	TCPListen      = 0x0A
)

// EachTCP calls fn for every TCP socket of domain (unix.AF_INET or unix.AF_INET6) in the
// calling thread's network namespace, from the kernel's own table: /proc/thread-self/net/tcp
// or tcp6, what ss -tn reads. (/proc/net is the main thread's namespace, which a thread that
// entered another one with setns(2) does not share.)
func EachTCP(domain int, fn func(TCPRow)) error {
	return readTCPTable(domain, func(r io.Reader) error { return eachTCP(r, fn) })
}

// readTCPTable opens the calling thread's table of domain and hands it to read; an error
// read returns names the file.
func readTCPTable(domain int, read func(io.Reader) error) error {
	path := "/proc/thread-self/net/tcp"
	if domain == unix.AF_INET6 {
		path += "6"
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := read(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func eachTCP(r io.Reader, fn func(TCPRow)) error {
	return eachTCPLine(r, 4, func(f []string) error {
		row, err := parseTCPRow(f)
		if err == nil {
			fn(row)
		}
		return err
	})
}

// eachTCPLine calls parse with the fields of each row of the table, past its header
// ("  sl  local_address rem_address   st ..."), leaving out a row of fewer fields than that;
// an error of parse's quotes the row.
func eachTCPLine(r io.Reader, fields int, parse func(f []string) error) error {
	sc := bufio.NewScanner(r)
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < fields {
			continue
		}
		if err := parse(f); err != nil {
			return fmt.Errorf("cannot read %q: %w", sc.Text(), err)
		}
	}
	return sc.Err()
}

// parseTCPRow reads the first four fields of a row, its ends and its state:
// "0:", "0100007F:1B58", "0200007F:8A3C", "01".
func parseTCPRow(f []string) (TCPRow, error) {
	l, err1 := parseHexAddrPort(f[1])
	r, err2 := parseHexAddrPort(f[2])
	st, err3 := strconv.ParseUint(f[3], 16, 8)
	return TCPRow{Local: l, Remote: r, State: uint8(st)}, errors.Join(err1, err2, err3)
}

// parseHexAddrPort reads an end as the kernel prints it: "0100007F:1B58" is 127.0.0.1:7000
// on a little-endian machine. The address is the bytes of the kernel's __be32 (or four of
// them for IPv6), each 32-bit word printed with %08X as a native integer, so each word goes
// back to memory in the native byte order; the port is plain hex.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw := make([]byte, len(a)/2)
	for w := 0; w < len(raw); w += 4 {
		v, err := strconv.ParseUint(a[2*w:2*w+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
		}
		binary.NativeEndian.PutUint32(raw[w:], uint32(v))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// Sockstat is the TCP line of /proc/net/sockstat: sockets in use in this namespace
// (inuse), orphans, TIME_WAIT, allocated (all namespaces) and the pages of buffer memory
// TCP holds (mem, all namespaces).
type Sockstat struct{ InUse, Orphan, TimeWait, Alloc, MemPages int64 }

func ReadSockstat() (Sockstat, error) {
	var s Sockstat
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "TCP: ")
		if !ok {
			continue
		}
		fields := map[string]*int64{"inuse": &s.InUse, "orphan": &s.Orphan, "tw": &s.TimeWait,
			"alloc": &s.Alloc, "mem": &s.MemPages}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			assign(fields, f[i], f[i+1])
		}
	}
	return s, nil
}

// Slabs is the bytes each slab cache holds in objects in use (active_objs × objsize of
// /proc/slabinfo, which needs root). Slab caches are the kernel's, not a namespace's.
func Slabs() (map[string]int64, error) {
	f, err := os.Open("/proc/slabinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || strings.HasPrefix(f[0], "#") || f[0] == "slabinfo" {
			continue
		}
		active, err1 := strconv.ParseInt(f[1], 10, 64)
		size, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 == nil && err2 == nil {
			m[f[0]] += active * size
		}
	}
	return m, sc.Err()
}

// Meminfo reads one field of /proc/meminfo, in bytes; 0 when it cannot.
func Meminfo(field string) int64 {
	n, _ := kBField("/proc/meminfo", field)
	return n
}
