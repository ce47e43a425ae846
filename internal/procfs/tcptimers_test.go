//go:build linux

package procfs

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A little-endian kernel's table: a TIME_WAIT with 60 s to go (0x1770 ticks), an orphan in
// FIN_WAIT2 with 7 s (0x2BC), a request in SYN_RECV whose SYN-ACK timer has 1 s, and a
// connection with 5 bytes unread.
const timedTable = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1B58 0100007F:8A3C 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   1: 0100007F:1B58 0100007F:8A3D 05 00000000:00000000 03:000002BC 00000000     0        0 0 3 0000000000000000
   2: 0100007F:1B58 0100007F:8A3E 03 00000000:00000000 01:00000064 00000000     0        0 0 1 0000000000000000
   3: 0100007F:1B58 0100007F:8A3F 01 00000000:00000005 00:00000000 00000000     0        0 1235 1 0000000000000000 20 4 30 10 -1
`

func TestEachTCPTimedParses(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the fixture is a little-endian kernel's")
	}
	local := netip.MustParseAddrPort("127.0.0.1:7000")
	row := func(port uint16, st uint8) TCPRow {
		return TCPRow{Local: local, Remote: netip.AddrPortFrom(local.Addr(), port), State: st}
	}
	want := []TCPTimed{
		{TCPRow: row(0x8A3C, TCPTimeWait), Timer: TimerTimeWait, When: 60 * time.Second},
		{TCPRow: row(0x8A3D, TCPFinWait2), Timer: TimerTimeWait, When: 7 * time.Second},
		{TCPRow: row(0x8A3E, TCPSynRecv), Timer: TimerRetransmit, When: time.Second},
		{TCPRow: row(0x8A3F, TCPEstablished), RxQueue: 5},
	}
	var got []TCPTimed
	if err := eachTCPTimed(strings.NewReader(timedTable), func(r TCPTimed) { got = append(got, r) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v,\nwant %+v", got, want)
	}
	bad := "header\n   0: 0100007F:1B58 0100007F:8A3C 06 00000000:00000000 0300001770\n"
	if err := eachTCPTimed(strings.NewReader(bad), func(TCPTimed) {}); err == nil {
		t.Error("a row without a timer's colon was taken")
	}
	if TCPStateName(TCPLastAck) != "LAST_ACK" || TCPStateName(0) != "UNKNOWN(0)" {
		t.Errorf("TCPStateName: %q, %q", TCPStateName(TCPLastAck), TCPStateName(0))
	}
}

// TestEachTCPTimedFindsAListener: the kernel's own table, read with the timer columns, holds
// a listener this process opened, with no timer pending.
func TestEachTCPTimedFindsAListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	at := ln.Addr().(*net.TCPAddr).AddrPort()
	var found []TCPTimed
	if err := EachTCPTimed(unix.AF_INET, func(r TCPTimed) {
		if r.Local == at && r.State == TCPListen {
			found = append(found, r)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Timer != TimerNone {
		t.Errorf("LISTEN rows for %s: %+v", at, found)
	}
}
