//go:build linux

package testkit

import "testing"

// TestInCI: any true value of strconv.ParseBool is CI; anything else, unset included, is not.
func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "1": true, "TRUE": true, "t": true, "false": false, "0": false, "": false, "yes": false} {
		t.Setenv("CI", v)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, got, want)
		}
	}
}

func TestFamilies(t *testing.T) {
	for _, f := range Families {
		t.Run(f.Name, func(t *testing.T) {
			f.Require(t)
			if a := f.Any(); a.Addr() != f.Loopback || a.Port() != 0 || !a.Addr().IsLoopback() {
				t.Errorf("Any() = %s", a)
			}
			if want := map[string]string{"ipv4": "AF_INET", "ipv6": "AF_INET6"}[f.Name]; f.DomainName() != want {
				t.Errorf("DomainName() = %q, want %q", f.DomainName(), want)
			}
		})
	}
}
