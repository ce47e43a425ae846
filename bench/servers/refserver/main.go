// Command refserver is the benchmark's refserver: refserver.New with the Echo handler, as
// `refserver -mode echo -quiet -idle-timeout 0 -reuseport` runs it, plus the flags every
// benchmark server shares (a CPU profile on request). Loops are GOMAXPROCS, each with a
// listener of its own (SO_REUSEPORT).
package main

import (
	"portproof/bench/internal/serve"
	"portproof/refserver"
)

func main() {
	// --8<-- [start:echo]
	serve.Refserver(serve.Parse(), refserver.Echo{})
	// --8<-- [end:echo]
}
