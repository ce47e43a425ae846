//go:build linux

package main

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"portproof/internal/testkit"
)

// TestV6Only: -v6only has refserver set IPV6_V6ONLY on its IPv6 listener before bind, and
// the narration shows the call and the kernel's answer. The tests listen on loopback alone,
// so on [::1]: what the option does to [::] is proven by chapter 9's specs, in a private
// network namespace.
func TestV6Only(t *testing.T) {
	f := testkit.Families[1]
	f.Require(t)
	c := startCLI(t, "-addr", f.Any().String(), "-v6only")
	all := strings.Join(c.out.All(), "\n")
	m := regexp.MustCompile(`(?m)^socket\(AF_INET6, [^)]*\) = (\d+)$`).FindStringSubmatch(all)
	if m == nil {
		t.Fatalf("no socket(AF_INET6, ...) in the narration:\n%s", all)
	}
	fd := m[1]
	order := regexp.MustCompile(`(?s)setsockopt\(` + fd + `, SOL_SOCKET, SO_REUSEADDR, 1\) = 0\n` +
		`setsockopt\(` + fd + `, IPPROTO_IPV6, IPV6_V6ONLY, 1\) = 0\n` +
		`bind\(` + fd + `, ` + regexp.QuoteMeta(f.Any().String()) + `\) = 0\n`)
	if !order.MatchString(all) {
		t.Errorf("want IPV6_V6ONLY set after SO_REUSEADDR and before bind:\n%s", all)
	}
	// The listener serves IPv6 clients as ever.
	client := c.dial(t)
	defer client.Close()
	line := make([]byte, 256)
	if n, err := client.Read(line); err != nil || !strings.HasPrefix(string(line[:n]), "tcp [::1]:") {
		t.Errorf("tuple line %q, %v", line[:n], err)
	}
	client.Close()
	c.signal(t, unix.SIGTERM)
	if code := c.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// TestDualStackWords: the line under "listening on" for [::], by IPV6_V6ONLY as the kernel
// read it back; nothing for any other address. (Only the words: see TestV6Only.)
func TestDualStackWords(t *testing.T) {
	for _, tc := range []struct {
		v6only     int
		bindv6only string
		want       []string
	}{
		{0, "0", []string{"IPV6_V6ONLY 0 (net.ipv6.bindv6only 0)", "as ::ffff:a.b.c.d", "nc -4 127.0.0.1 7000", "0.0.0.0:7000 is taken"}},
		{1, "0", []string{"IPV6_V6ONLY 1: IPv6 clients only", "nc -6 ::1 7000", "0.0.0.0:7000 beside this one"}},
	} {
		got := dualStackWords(7000, tc.v6only, tc.bindv6only)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("dualStackWords(7000, %d, %q) = %q; want it to say %q", tc.v6only, tc.bindv6only, got, w)
			}
		}
	}
	f := testkit.Families[1]
	f.Require(t)
	l, err := net.Listen("tcp", f.Any().String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	raw, _ := l.(*net.TCPListener).SyscallConn()
	raw.Control(func(fd uintptr) {
		ap := l.Addr().(*net.TCPAddr).AddrPort()
		if got := dualStack(ap, int(fd)); got != "" {
			t.Errorf("dualStack(%s) = %q; want nothing for an address other than [::]", ap, got)
		}
	})
}
