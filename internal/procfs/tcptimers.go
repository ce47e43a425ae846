package procfs

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// TCPTimed is a row of /proc/net/tcp with what EachTCP leaves out: the queues and the
// socket's pending timer.
type TCPTimed struct {
	TCPRow
	// TxQueue and RxQueue are the tx_queue and rx_queue columns: on a connection, the bytes
	// sent and not yet acknowledged, and the bytes received and not yet read.
	TxQueue, RxQueue uint32
	// Timer is the "tr" column: which timer is pending (0 none, 1 retransmission, 2
	// keepalive or the FIN_WAIT2 timer of an orphan, 3 a TIME_WAIT socket's, 4 the zero
	// window probe), as tcp4_seq_show prints it; a request in SYN_RECV shows 1, its SYN-ACK's.
	Timer uint8
	// When is the "tm->when" column: the time left until that timer fires, which the kernel
	// prints in clock ticks (USER_HZ, 100 a second: jiffies_delta_to_clock_t).
	When time.Duration
}

// Timer kinds of the "tr" column.
const (
	TimerNone       = 0
	TimerRetransmit = 1
	TimerKeepalive  = 2
	TimerTimeWait   = 3
	TimerProbe      = 4
)

// TCP states beside those of kernel.go, as /proc/net/tcp numbers them (include/net/tcp_states.h).
// A request that a listener holds between SYN-ACK and ACK is listed as SYN_RECV.
const (
	TCPSynRecv   = 0x03
	TCPFinWait1  = 0x04
	TCPFinWait2  = 0x05
	TCPClose     = 0x07
	TCPCloseWait = 0x08
	TCPLastAck   = 0x09
)

// TCPStateName is the state as ss(8) spells it.
func TCPStateName(st uint8) string {
	names := [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
		"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}
	if int(st) < len(names) && st > 0 {
		return names[st]
	}
	return fmt.Sprintf("UNKNOWN(%d)", st)
}

// EachTCPTimed is EachTCP with the queues and the timer of each row: the sockets that no
// descriptor reaches (a TIME_WAIT, an orphan in FIN_WAIT2, a request in SYN_RECV) have no
// getsockopt to ask, and this table is where the kernel shows them.
func EachTCPTimed(domain int, fn func(TCPTimed)) error {
	return readTCPTable(domain, func(r io.Reader) error { return eachTCPTimed(r, fn) })
}

// clockTicks is USER_HZ, the unit of tm->when.
const clockTicks = 100

func eachTCPTimed(r io.Reader, fn func(TCPTimed)) error {
	// "  0: 0100007F:1B58 0200007F:8A3C 06 00000000:00000000 03:00001770 00000000 ..."
	return eachTCPLine(r, 6, func(f []string) error {
		row, err1 := parseTCPRow(f)
		tx, rx, ok1 := strings.Cut(f[4], ":")
		tr, when, ok2 := strings.Cut(f[5], ":")
		txq, err2 := strconv.ParseUint(tx, 16, 32)
		rxq, err3 := strconv.ParseUint(rx, 16, 32)
		timer, err4 := strconv.ParseUint(tr, 16, 8)
		ticks, err5 := strconv.ParseUint(when, 16, 64)
		if !ok1 || !ok2 {
			err1 = errors.Join(err1, errors.New("no queues or no timer"))
		}
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return err
		}
		fn(TCPTimed{
			TCPRow:  row,
			TxQueue: uint32(txq), RxQueue: uint32(rxq), Timer: uint8(timer),
			When: time.Duration(ticks) * time.Second / clockTicks,
		})
		return nil
	})
}
