//go:build linux

package lab

import (
	"strings"
	"testing"
)

func TestParseCounters(t *testing.T) {
	const snmp = `Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm MaxConn ActiveOpens
Tcp: 1 -1 7
Udp: InDatagrams
Udp: 3
`
	c, err := parseCounters(strings.NewReader(snmp), "snmp", "Tcp")
	if err != nil {
		t.Fatal(err)
	}
	if c["MaxConn"] != -1 || c["ActiveOpens"] != 7 || len(c) != 3 {
		t.Errorf("Tcp = %v", c)
	}
	for _, bad := range []string{"Tcp: A B\nTcp: 1\n", "Tcp: A\nTcp: x\n", "Udp: A\nUdp: 1\n", "Tcp: A\n"} {
		if c, err := parseCounters(strings.NewReader(bad), "snmp", "Tcp"); err == nil {
			t.Errorf("%q parsed as %v", bad, c)
		}
	}
}
