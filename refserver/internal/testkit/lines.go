// Package testkit holds what refserver's tests and its CLI's tests share. It is internal: no
// fork of the server needs it.
package testkit

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Lines collects what a child process writes (it is the child's Stdout), line by line, and
// lets a test wait for one: the server narrates, and the tests read the narration.
type Lines struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
	more    chan struct{} // closed and replaced at every line, so a waiter wakes per line
}

func NewLines() *Lines { return &Lines{more: make(chan struct{})} }

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
		close(l.more)
		l.more = make(chan struct{})
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
		more := l.more
		l.mu.Unlock()
		select {
		case <-more:
		case <-timeout:
			return "", fmt.Errorf("no line with %q after %v", substr, d)
		}
	}
}

// All is every complete line so far.
func (l *Lines) All() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *Lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n") + string(l.partial)
}
