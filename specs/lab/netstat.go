//go:build linux

package lab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Counters are the kernel's SNMP-style counters of one group, by name: "ListenOverflows",
// "ActiveOpens". They are per network namespace, and only a namespace of the proof's own
// (a sandbox child) has counters that nothing else moves. int64, because one of them is
// signed: Tcp's MaxConn is -1 (no limit).
type Counters map[string]int64

// TCPExt reads the TcpExt group of /proc/net/netstat, the Linux TCP counters: among them
// ListenOverflows (a finished handshake found the accept queue full), ListenDrops (every
// SYN or final ACK a listener dropped, overflows included), TCPReqQFullDrop and
// TCPReqQFullDoCookies.
func TCPExt() (Counters, error) { return readCounters("/proc/thread-self/net/netstat", "TcpExt") }

// TCPSNMP reads the Tcp group of /proc/net/snmp, the RFC 1213 counters: ActiveOpens (connect
// calls that sent a SYN), PassiveOpens (connections a listener created), AttemptFails,
// EstabResets, CurrEstab, OutRsts (RSTs sent).
func TCPSNMP() (Counters, error) { return readCounters("/proc/thread-self/net/snmp", "Tcp") }

// Sub is c less before, counter by counter: what happened in between.
func (c Counters) Sub(before Counters) Counters {
	d := make(Counters, len(c))
	for name, v := range c {
		d[name] = v - before[name]
	}
	return d
}

// readCounters parses a file where each group is two lines, "Group: Name1 Name2 ..." then
// "Group: value1 value2 ...". It reads /proc/thread-self/net, which is the calling thread's
// namespace, where /proc/net (a link to /proc/self/net) is the main thread's; the two only
// differ in a process that moved a thread with setns(2).
func readCounters(path, group string) (Counters, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseCounters(f, path, group)
}

func parseCounters(r io.Reader, path, group string) (Counters, error) {
	prefix := group + ":"
	var names []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != prefix {
			continue
		}
		if names == nil {
			names = fields[1:]
			continue
		}
		values := fields[1:]
		if len(values) != len(names) {
			return nil, fmt.Errorf("%s: %s has %d names and %d values", path, group, len(names), len(values))
		}
		c := make(Counters, len(names))
		for i, name := range names {
			v, err := strconv.ParseInt(values[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s %s: %w", path, group, name, err)
			}
			c[name] = v
		}
		return c, nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nil, fmt.Errorf("%s: no %s counters", path, group)
}
