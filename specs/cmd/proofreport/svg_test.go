package main

import "testing"

func TestGrouped(t *testing.T) {
	for n, want := range map[int]string{0: "0", 100: "100", 1000: "1,000", 36913: "36,913",
		10000: "10,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := grouped(n); got != want {
			t.Errorf("grouped(%d) = %q, want %q", n, got, want)
		}
	}
}
