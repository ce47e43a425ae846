//go:build linux

package refserver

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/refserver/sock"
)

// helperEnv makes the test binary a server instead of a test run. RLIMIT_NOFILE is
// per process, so a test that lowers it runs its server in a child: the test binary again,
// with helperEnv set (and the limit in helperNofileEnv).
const (
	helperEnv       = "REFSERVER_TEST_HELPER"
	helperNofileEnv = "REFSERVER_TEST_NOFILE"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "serve" {
		os.Exit(helperServe())
	}
	os.Exit(m.Run())
}

// helperServe runs a tuple server on 127.0.0.1:0 with its log on stdout (the parent parses
// "listening on ADDR"), until stdin ends: the parent closes it, or dies. It prints the
// server's stats then, for the parent to compare with what its clients saw.
func helperServe() int {
	logger := log.New(os.Stdout, "", 0)
	if n, err := strconv.ParseUint(os.Getenv(helperNofileEnv), 10, 64); err == nil {
		rl := unix.Rlimit{Cur: n}
		_, rl.Max, _ = sock.DescriptorLimit()
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			fmt.Fprintln(os.Stderr, "setrlimit:", err)
			return 1
		}
	}
	srv, err := New(Config{Addr: netip.MustParseAddrPort("127.0.0.1:0"), Log: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fds, _ := sock.OpenDescriptors()
	soft, _, _ := sock.DescriptorLimit()
	logger.Printf("listening on %s; descriptors %d/%d", srv.Addr(), fds, soft)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	io.Copy(io.Discard, os.Stdin)
	logger.Printf("stats: %s", srv.Stats())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Shutdown:", err)
		return 1
	}
	if err := <-served; err != nil {
		fmt.Fprintln(os.Stderr, "Serve:", err)
		return 1
	}
	return 0
}
