//go:build linux

package refserver

import "sync/atomic"

// --8<-- [start:budget]

// budget bounds the output queued for slow readers across all connections, the one memory a
// crowd of clients could otherwise grow: each connection's queue has its own cap
// (Config.MaxOutput), but a thousand stalled readers hold a thousand queues. Past the budget
// the loops stop reading every connection, since any read may produce more output, and go on
// writing; once the queues have drained to half of it, reading resumes. A crowd that never
// reads holds at most the budget (and one read's output per loop more) until its
// connections time out idle.
type budget struct {
	max    int64        // Config.MaxQueued
	log    *logbook     // a pause is told, at most once a second
	queued atomic.Int64 // bytes in every Conn.out now
	paused atomic.Bool  // reading stopped: queued passed max, and has not yet fallen to max/2
	// resume wakes every loop when reading resumes, so each re-arms the connections it
	// parked.
	resume func()
}

// --8<-- [start:budget-core]

// add counts n bytes newly queued; the first to pass the budget pauses reading.
func (b *budget) add(n int) {
	q := b.queued.Add(int64(n))
	if q > b.max && !b.paused.Load() && b.paused.CompareAndSwap(false, true) {
		b.log.every(&b.log.paused, "reading paused: %d KiB of output queued for slow readers, "+
			"more than -max-queued %d KiB; it resumes at half of that", q/1024, b.max/1024)
	}
}

// sub counts n bytes sent or dropped; the first to bring the queues down to half the budget
// resumes reading, and wakes the loops to re-arm what they parked.
func (b *budget) sub(n int) {
	if n == 0 {
		return
	}
	if b.queued.Add(-int64(n)) <= b.max/2 && b.paused.Load() &&
		b.paused.CompareAndSwap(true, false) {
		b.resume()
	}
}

// --8<-- [end:budget-core]

// --8<-- [end:budget]
