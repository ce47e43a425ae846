// Command gnet is the benchmark's echo server on gnet v2, the event-loop library a forker
// would pick instead of writing one: multicore, one loop per P, echo in OnTraffic.
package main

import (
	"fmt"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"portproof/bench/internal/serve"
)

// --8<-- [start:echo]
type echo struct{ gnet.BuiltinEventEngine }

func (echo) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Next(-1) // what the loop's read(2) brought, without a copy
	c.Write(buf)
	return gnet.None
}

// --8<-- [end:echo]

// booted announces the address the kernel chose: gnet has no Addr(), so getsockname on a
// duplicate of the listener.
type booted struct{ echo }

func (booted) OnBoot(eng gnet.Engine) gnet.Action {
	fd, err := eng.Dup()
	if err != nil {
		serve.Fatal(err)
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		serve.Fatal(err)
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		serve.Fatal(fmt.Errorf("listener is not IPv4: %T", sa))
	}
	serve.Announce(fmt.Sprintf("%d.%d.%d.%d:%d", in4.Addr[0], in4.Addr[1], in4.Addr[2], in4.Addr[3], in4.Port))
	return gnet.None
}

func main() {
	f := serve.Parse()
	go func() {
		err := gnet.Run(&booted{}, "tcp4://"+f.Addr,
			gnet.WithMulticore(true), gnet.WithNumEventLoop(f.Loops))
		serve.Fatal(fmt.Errorf("gnet.Run: %v", err))
	}()
	serve.Run(f)
}
