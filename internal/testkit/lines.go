// Package testkit holds what the project's tests share: refserver's, its CLI's, the specs'
// and the benchmark's. It is internal: no fork of the server needs it.
package testkit

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Lines collects what a writer produces, line by line, and lets a test wait for one: it is
// a child process's Stdout, or a server's log.Logger, written by the loops' goroutines
// while the test reads. The zero value is ready to use.
type Lines struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
	more    chan struct{} // closed and replaced at every line, so a waiter wakes per line
}

func NewLines() *Lines { return &Lines{} }

func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		if l.more != nil {
			close(l.more)
			l.more = nil
		}
	}
	return len(p), nil
}

// Wait returns the first line containing substr, waiting at most d for it.
func (l *Lines) Wait(substr string, d time.Duration) (string, error) {
	timeout := time.After(d)
	for {
		l.mu.Lock()
		for _, s := range l.lines {
			if strings.Contains(s, substr) {
				l.mu.Unlock()
				return s, nil
			}
		}
		if l.more == nil {
			l.more = make(chan struct{})
		}
		more := l.more
		l.mu.Unlock()
		select {
		case <-more:
		case <-timeout:
			return "", fmt.Errorf("no line with %q after %v", substr, d)
		}
	}
}

// All is every complete line so far, without its newline.
func (l *Lines) All() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// String is everything written so far, the unfinished last line included.
func (l *Lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	all := l.lines
	if len(l.partial) > 0 {
		all = append(all[:len(all):len(all)], string(l.partial))
	}
	return strings.Join(all, "\n")
}
