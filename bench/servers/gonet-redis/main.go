// Command gonet-redis is the Redis subset that examples/miniredis serves on refserver (PING,
// ECHO, GET, SET, DEL, EXISTS, INCR, COMMAND, CONFIG GET, QUIT; RESP arrays and inline
// commands; pipelining), written the way a Go programmer writes a server on the net package:
// a goroutine per connection, a bufio.Reader to parse, a bufio.Writer for the replies. It is
// the benchmark's idiomatic baseline beside miniredis and redis-server, a different program
// on purpose: it shares no code with miniredis, only the replies.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"portproof/bench/internal/serve"
)

func main() {
	db := &store{keys: map[string]string{}}
	serve.GoNet(serve.Parse(), db.serve) // -loops is the others'; here GOMAXPROCS is all there is
}

// --8<-- [start:serve]

// store is the keyspace, shared by every connection's goroutine.
type store struct {
	mu   sync.RWMutex
	keys map[string]string
}

// serve answers one connection's commands in order. Replies wait in the bufio.Writer until
// the reader has nothing more buffered: a pipelined batch that came in one read goes back in
// one write, and a lone command is answered at once.
func (db *store) serve(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		args, err := readCommand(r)
		var perr protocolError
		if errors.As(err, &perr) {
			fmt.Fprintf(w, "-ERR Protocol error: %s\r\n", perr)
			w.Flush()
			return
		}
		if err != nil {
			return // the client left, or its connection failed
		}
		quit := len(args) > 0 && db.do(w, args) // no args: an empty inline line
		if quit || r.Buffered() == 0 {
			if err := w.Flush(); err != nil || quit {
				return
			}
		}
	}
}

// --8<-- [end:serve]

// protocolError is a client's mistake, answered with an error before the connection closes.
type protocolError string

func (e protocolError) Error() string { return string(e) }

// Limits on what a client may announce, so that a stray "*999999999" allocates nothing
// large: Redis's own bound on the number of arguments, and miniredis's default -max-input
// on one argument.
const (
	maxArgs = 1 << 20
	maxBulk = 8 << 20
)

// readCommand reads one command: a RESP array of bulk strings, as clients send
// ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), or an inline command, a line of words, as a person
// types it into nc ("GET k\r\n").
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(line, "*") {
		return strings.Fields(line), nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 || n > maxArgs {
		return nil, protocolError("invalid multibulk length")
	}
	args := make([]string, n)
	for i := range args {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(line, "$") {
			return nil, protocolError("expected '$' before a bulk string")
		}
		size, err := strconv.Atoi(line[1:])
		if err != nil || size < 0 || size > maxBulk {
			return nil, protocolError("invalid multibulk length") // miniredis's words for it
		}
		buf := make([]byte, size+2) // the string and its CRLF
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		args[i] = string(buf[:size])
	}
	return args, nil
}

// readLine reads a line without its "\r\n" (or "\n"). A line longer than the reader's
// buffer (4 KiB) is a protocol error: only an inline command could be that long, and
// nobody types one.
func readLine(r *bufio.Reader) (string, error) {
	b, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", protocolError("too big inline request")
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
}

// do runs one command and writes its reply; quit says the client asked to leave.
func (db *store) do(w *bufio.Writer, args []string) (quit bool) {
	name, args := strings.ToUpper(args[0]), args[1:]
	switch {
	case name == "PING" && len(args) == 0:
		w.WriteString("+PONG\r\n")
	case (name == "PING" || name == "ECHO") && len(args) == 1:
		writeBulk(w, args[0])
	case name == "GET" && len(args) == 1:
		db.mu.RLock()
		v, ok := db.keys[args[0]]
		db.mu.RUnlock()
		if !ok {
			w.WriteString("$-1\r\n")
		} else {
			writeBulk(w, v)
		}
	case name == "SET" && len(args) == 2:
		db.mu.Lock()
		db.keys[args[0]] = args[1]
		db.mu.Unlock()
		w.WriteString("+OK\r\n")
	case (name == "DEL" || name == "EXISTS") && len(args) > 0:
		n := 0
		db.mu.Lock()
		for _, k := range args {
			if _, ok := db.keys[k]; ok {
				n++
				if name == "DEL" {
					delete(db.keys, k)
				}
			}
		}
		db.mu.Unlock()
		fmt.Fprintf(w, ":%d\r\n", n)
	case name == "INCR" && len(args) == 1:
		db.mu.Lock()
		defer db.mu.Unlock()
		n := 0
		if v, ok := db.keys[args[0]]; ok {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				w.WriteString("-ERR value is not an integer or out of range\r\n")
				return false
			}
		}
		db.keys[args[0]] = strconv.Itoa(n + 1)
		fmt.Fprintf(w, ":%d\r\n", n+1)
	case name == "COMMAND", name == "CONFIG" && len(args) > 0 && strings.EqualFold(args[0], "GET"):
		// redis-cli asks at start-up for its hints, redis-benchmark for the persistence
		// settings: an empty array says there is nothing to tell.
		w.WriteString("*0\r\n")
	case name == "QUIT":
		w.WriteString("+OK\r\n")
		return true
	default:
		fmt.Fprintf(w, "-ERR unknown command or wrong number of arguments for '%s'\r\n", name)
	}
	return false
}

func writeBulk(w *bufio.Writer, v string) {
	fmt.Fprintf(w, "$%d\r\n%s\r\n", len(v), v)
}
