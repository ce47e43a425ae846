package procfs

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// TCPRow is one socket of /proc/net/tcp: its two ends and the state (01 ESTABLISHED,
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

// EachTCP calls fn for every IPv4 TCP socket of the reader's network namespace, from the
// kernel's own table, /proc/net/tcp (the namespace of the process's main thread).
func EachTCP(fn func(TCPRow)) error {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<16)
	sc.Scan() // the header
	for sc.Scan() {
		// "  0: 0100007F:1B58 0200007F:8A3C 01 ..."
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		l, err1 := hexAddrPort(f[1])
		r, err2 := hexAddrPort(f[2])
		st, err3 := strconv.ParseUint(f[3], 16, 8)
		if err1 != nil || err2 != nil || err3 != nil {
			return fmt.Errorf("/proc/net/tcp: cannot read %q", sc.Text())
		}
		fn(TCPRow{Local: l, Remote: r, State: uint8(st)})
	}
	return sc.Err()
}

// hexAddrPort reads "0100007F:1B58": the address as the kernel's __be32 printed as a
// native (little-endian) integer, then the port in hex.
func hexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(a) != 8 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	b, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}), uint16(port)), nil
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
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			n, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "inuse":
				s.InUse = n
			case "orphan":
				s.Orphan = n
			case "tw":
				s.TimeWait = n
			case "alloc":
				s.Alloc = n
			case "mem":
				s.MemPages = n
			}
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

// Meminfo reads one field of /proc/meminfo, in bytes.
func Meminfo(field string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
