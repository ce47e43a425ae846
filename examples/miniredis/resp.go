//go:build linux

package main

import (
	"bytes"
	"errors"
	"strconv"
)

// --8<-- [start:parse]

// parse reads one command from the front of in: a RESP array of bulk strings, as clients
// send ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), or an inline command, a line of words, as a person
// types it into nc ("GET k\r\n"). It returns the command's words and how many bytes it
// took, or 0 when the command is not whole yet: the loop keeps the rest and hands it back,
// with more, after the next read. The words point into in: copy what outlives the call.
func parse(in []byte, args [][]byte) ([][]byte, int, error) {
	if len(in) == 0 {
		return args, 0, nil
	}
	given := len(args) // an incomplete command returns the words it was given, no more
	if in[0] != '*' {
		line, n := readLine(in)
		if n == 0 {
			return args, 0, nil
		}
		return append(args, bytes.Fields(line)...), n, nil
	}
	count, pos, err := readNumber(in, 0)
	if err != nil || pos == 0 {
		return args, 0, err
	}
	// --8<-- [start:parse-core]
	for range count {
		if pos >= len(in) {
			return args[:given], 0, nil
		}
		if in[pos] != '$' {
			return args[:given], 0, errors.New("expected '$' before a bulk string")
		}
		size, next, err := readNumber(in, pos)
		if err != nil || next == 0 {
			return args[:given], 0, err
		}
		if len(in)-next < size+2 {
			return args[:given], 0, nil // the bulk string and its CRLF are not all here yet
		}
		args = append(args, in[next:next+size])
		pos = next + size + 2
	}
	return args, pos, nil
	// --8<-- [end:parse-core]
}

// --8<-- [end:parse]

// readNumber reads "*12\r\n" or "$5\r\n" at in[at:]: the number, and where what follows
// starts; 0 for that while the line is not whole.
func readNumber(in []byte, at int) (int, int, error) {
	line, n := readLine(in[at:])
	if n == 0 {
		return 0, 0, nil
	}
	v, err := strconv.Atoi(string(line[1:]))
	if err != nil || v < 0 || v > maxArgs {
		return 0, 0, errors.New("invalid multibulk length")
	}
	return v, at + n, nil
}

// readLine is the line at the front of in without its "\r\n" (or "\n"), and its length with
// it; n is 0 while the line has no end yet.
func readLine(in []byte) (line []byte, n int) {
	i := bytes.IndexByte(in, '\n')
	if i < 0 {
		return nil, 0
	}
	return bytes.TrimSuffix(in[:i], []byte("\r")), i + 1
}
