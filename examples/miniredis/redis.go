//go:build linux

package main

import (
	"bytes"
	"strconv"
	"sync"

	"portproof/refserver"
)

// maxArgs bounds a length a client may announce ("*N", "$N"); refserver's MaxInput bounds
// what it may then send.
const maxArgs = 512 << 20

// replyMark is how much output may wait for a client before the handler stops parsing its
// pipelined commands: the loop stops reading it anyway, and hands the rest back once the
// queue has drained, so a client that reads slowly gets every reply, late, and none is cut.
const replyMark = 256 << 10

// store is the keyspace, shared by every loop: one Handler serves them all at once, so it
// takes a lock.
type store struct {
	mu   sync.Mutex
	keys map[string][]byte
}

// redis is the Handler: RESP in, RESP out.
type redis struct{ db *store }

// scratch is a loop's own: the arguments of the command being parsed and the reply being
// built, reused for every command of that loop's connections without a lock.
type scratch struct {
	args  [][]byte
	name  []byte // the command's name, upper-cased
	reply []byte
}

func (redis) NewLoopState(int) any { return &scratch{} }

func (redis) OnOpen(*refserver.Conn)         {}
func (redis) OnClose(*refserver.Conn, error) {}

// --8<-- [start:ondata]

// OnData answers every whole command at the front of in, in order, and returns how many
// bytes they took. It stops early while replies back up (replyMark), and at a command not
// yet whole: the loop keeps the rest for the next call.
func (r redis) OnData(c *refserver.Conn, in []byte) int {
	s := c.LoopState().(*scratch)
	used := 0
	for c.Queued() < replyMark {
		args, n, err := parse(in[used:], s.args[:0])
		if err != nil {
			c.Write([]byte("-ERR Protocol error: " + err.Error() + "\r\n"))
			c.Close()
			return len(in)
		}
		if n == 0 {
			break
		}
		used += n
		s.args = args
		if len(args) == 0 {
			continue // an empty inline line
		}
		s.reply = r.do(s, args)
		c.Write(s.reply) // gathered, and sent in one write(2) when OnData returns
		if bytes.EqualFold(args[0], []byte("QUIT")) {
			c.Close()
			return len(in)
		}
	}
	return used
}

// --8<-- [end:ondata]

// do runs one command and returns its reply, built in the loop's scratch buffers: no
// allocation per command but the value a SET keeps. (A comparison of string(b) with a
// constant does not allocate either.)
func (r redis) do(s *scratch, args [][]byte) []byte {
	s.name = append(s.name[:0], args[0]...)
	for i, ch := range s.name {
		if 'a' <= ch && ch <= 'z' {
			s.name[i] = ch - 'a' + 'A'
		}
	}
	name, args, out := s.name, args[1:], s.reply[:0]
	switch {
	case string(name) == "PING" && len(args) == 0:
		return append(out, "+PONG\r\n"...)
	case string(name) == "PING" && len(args) == 1, string(name) == "ECHO" && len(args) == 1:
		return bulk(out, args[0])
	case string(name) == "GET" && len(args) == 1:
		r.db.mu.Lock()
		v, ok := r.db.keys[string(args[0])]
		r.db.mu.Unlock()
		if !ok {
			return append(out, "$-1\r\n"...)
		}
		return bulk(out, v)
	case string(name) == "SET" && len(args) == 2:
		v := bytes.Clone(args[1]) // args point into the connection's input, reused after
		r.db.mu.Lock()
		r.db.keys[string(args[0])] = v
		r.db.mu.Unlock()
		return append(out, "+OK\r\n"...)
	case (string(name) == "DEL" || string(name) == "EXISTS") && len(args) > 0:
		n := 0
		r.db.mu.Lock()
		for _, k := range args {
			if _, ok := r.db.keys[string(k)]; ok {
				n++
				if string(name) == "DEL" {
					delete(r.db.keys, string(k))
				}
			}
		}
		r.db.mu.Unlock()
		return integer(out, int64(n))
	case string(name) == "INCR" && len(args) == 1:
		k := string(args[0])
		r.db.mu.Lock()
		defer r.db.mu.Unlock()
		n := int64(0)
		if v, ok := r.db.keys[k]; ok {
			var err error
			if n, err = strconv.ParseInt(string(v), 10, 64); err != nil {
				return append(out, "-ERR value is not an integer or out of range\r\n"...)
			}
		}
		r.db.keys[k] = strconv.AppendInt(nil, n+1, 10)
		return integer(out, n+1)
	case string(name) == "COMMAND",
		string(name) == "CONFIG" && len(args) > 0 && bytes.EqualFold(args[0], []byte("GET")):
		// Clients ask at start-up (redis-cli for its hints, redis-benchmark for the
		// persistence settings); an empty array says there is nothing to tell.
		return append(out, "*0\r\n"...)
	case string(name) == "QUIT":
		return append(out, "+OK\r\n"...)
	}
	return append(out, "-ERR unknown command or wrong number of arguments for '"+string(name)+"'\r\n"...)
}

func bulk(out, v []byte) []byte {
	out = append(out, '$')
	out = strconv.AppendInt(out, int64(len(v)), 10)
	out = append(out, "\r\n"...)
	out = append(out, v...)
	return append(out, "\r\n"...)
}

func integer(out []byte, n int64) []byte {
	out = append(out, ':')
	out = strconv.AppendInt(out, n, 10)
	return append(out, "\r\n"...)
}
