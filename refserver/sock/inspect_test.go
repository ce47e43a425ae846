//go:build linux

package sock

import (
	"os"
	"testing"
)

func TestSysctlPath(t *testing.T) {
	if p := SysctlPath("net.ipv4.ip_local_port_range"); p != "/proc/sys/net/ipv4/ip_local_port_range" {
		t.Errorf("SysctlPath = %q", p)
	}
	if _, err := os.Stat(SysctlPath("net.core.somaxconn")); err != nil {
		t.Error(err)
	}
	if v, err := Sysctl("net.core.somaxconn"); err != nil || v == "" {
		t.Errorf("Sysctl(net.core.somaxconn) = %q, %v", v, err)
	}
}
