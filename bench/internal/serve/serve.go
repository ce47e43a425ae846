// Package serve is what the benchmark's Go servers share: the same flags, the same
// "listening on ADDR" line for the driver to read, a CPU profile on request, and one way to
// run refserver (Refserver) and Go's net (GoNet), so that servers of one kind differ only in
// how they answer.
package serve

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
)

// Flags are the servers' common flags.
type Flags struct {
	Addr       string // -addr: where to listen; port 0 lets the kernel choose
	Loops      int    // -loops: event loops (gnet, refserver); 0 means GOMAXPROCS
	CPUProfile string // -cpuprofile: write a pprof CPU profile here until SIGTERM
	MemProfile string // -memprofile: on SIGUSR1, collect garbage and write a heap profile here
}

// Parse reads the flags; Loops 0 becomes GOMAXPROCS, so every server runs as many loops as
// Go net has Ps.
func Parse() Flags {
	var f Flags
	flag.StringVar(&f.Addr, "addr", "127.0.0.1:0", "`address` to listen on")
	flag.IntVar(&f.Loops, "loops", 0, "event `loops` (0: GOMAXPROCS)")
	flag.StringVar(&f.CPUProfile, "cpuprofile", "", "write a CPU profile to `file` until SIGTERM or SIGINT")
	flag.StringVar(&f.MemProfile, "memprofile", "", "on SIGUSR1, collect garbage, write a heap profile to `file` and the memory statistics to stderr")
	flag.Parse()
	if f.MemProfile != "" {
		runtime.MemProfileRate = 1 // every allocation, for a heap profile to the byte
	}
	if f.Loops <= 0 {
		f.Loops = runtime.GOMAXPROCS(0)
	}
	return f
}

// Announce prints the line the driver waits for.
func Announce(addr string) {
	fmt.Printf("listening on %s (pid %d, GOMAXPROCS %d)\n", addr, os.Getpid(), runtime.GOMAXPROCS(0))
}

// Run starts the profile if asked, then waits for SIGTERM or SIGINT and exits 0: the driver
// ends a server by signal, and a profile is only complete once StopCPUProfile has run.
func Run(f Flags) {
	if f.CPUProfile != "" {
		out, err := os.Create(f.CPUProfile)
		if err != nil {
			Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			out.Close()
		}()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	for s := range sig {
		if s != syscall.SIGUSR1 {
			return
		}
		memProfile(f.MemProfile)
	}
}

// memProfile collects garbage, then writes the live heap's profile and where the memory is.
func memProfile(path string) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "memstats: HeapAlloc %d HeapInuse %d HeapIdle %d HeapReleased %d StackInuse %d GCSys %d Sys %d NumGC %d Mallocs %d Frees %d\n",
		ms.HeapAlloc, ms.HeapInuse, ms.HeapIdle, ms.HeapReleased, ms.StackInuse, ms.GCSys, ms.Sys, ms.NumGC, ms.Mallocs, ms.Frees)
	if path == "" {
		return
	}
	out, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer out.Close()
	if err := pprof.Lookup("heap").WriteTo(out, 0); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// Fatal reports err and exits 1.
func Fatal(err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[0], err)
	os.Exit(1)
}
