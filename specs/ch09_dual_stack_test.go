//go:build linux

package specs

import (
	"fmt"
	"net/netip"
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// Every bind here is to [::] or 0.0.0.0, which on the host would take a port on every
// interface: each proof runs in a sandbox, whose only interface is its own lo.
var _ = Describe(DualStack.Title, Label("chapter:9"), func() {
	// Every proof here is about IPv6 sockets: a kernel without IPv6 has none to prove with.
	BeforeEach(func() { lab.RequireFamily(lab.IPv6) })

	// --8<-- [start:dualstack-mapped]
	It("takes an IPv4 client on [::] as ::ffff:127.0.0.1, and holds 0.0.0.0's port: EADDRINUSE",
		Label("claim:dualstack.mapped"), func() {
			seen := lab.RunInSandbox(ch9Child, ch9Arg{}, lab.SandboxOptions{})
			lab.Record(evidence.EntryDualStack, seen)
			Expect(seen.Clients).To(HaveLen(2), "clients: IPv4 and IPv6 to [::]")
			l6, v4, v6 := seen.Wildcard6, seen.Clients[0], seen.Clients[1]
			lab.Cite(evidence.Figures{"bindv6only": seen.BindV6Only, "v6only": *l6.V6Only,
				"listener": l6.Addr, "client": v4.Tuple, "seen_as": v4.SeenAs, "server": v4.Server,
				"greeting": v4.Greeting, "client6": v6.SeenAs, "accepted": l6.Accepted,
				"beside": seen.Wildcard4.Asked, "beside_errno": seen.Wildcard4.Errno})

			// --8<-- [start:dualstack-mapped-proof]
			// A new AF_INET6 socket takes IPV6_V6ONLY from net.ipv6.bindv6only (inet6_create),
			// 0 in a new namespace (inet6_net_init): refserver's [::] listener leaves it so.
			Expect(l6.Domain).To(Equal("AF_INET6"))
			Expect(strconv.Itoa(*l6.V6Only)).To(Equal(seen.BindV6Only), "IPV6_V6ONLY, bindv6only")
			Expect(*l6.V6Only).To(BeZero(), "IPV6_V6ONLY on %s", l6.Addr)

			// The IPv4 client's own socket is AF_INET, its end 127.0.0.1...
			Expect(v4.Domain).To(Equal("AF_INET"))
			Expect(v4.Errno).To(BeEmpty(), "an IPv4 client to %s", v4.To)
			client := ch9Tuple(v4.Tuple)
			// ...and the server's end, accept4 on [::], reads it back mapped: ::ffff:127.0.0.1.
			seenAs := netip.MustParseAddrPort(v4.SeenAs)
			Expect(seenAs.Addr().Is4In6()).To(BeTrue(), "the client, seen as %s", seenAs)
			Expect(netip.AddrPortFrom(seenAs.Addr().Unmap(), seenAs.Port())).To(Equal(client.local))
			Expect(v4.Server).To(Equal(netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"),
				ch9Port(l6)).String()), "refserver's own end of the IPv4 connection")
			// An IPv6 client is served by the same listener: one socket, two families.
			Expect(v6.SeenAs).To(HavePrefix("[::1]:"), "an IPv6 client to %s", v6.To)
			Expect(l6.Accepted).To(BeEquivalentTo(2), "connections %s accepted", l6.Addr)

			// The listener holds the IPv4 wildcard's port too (IPv4 and IPv6 share the port
			// space): refserver on 0.0.0.0:P fails at bind.
			l4 := seen.Wildcard4
			Expect(l4.Errno).To(Equal("EADDRINUSE"), "refserver on %s", l4.Asked)
			// --8<-- [end:dualstack-mapped-proof]
		})
	// --8<-- [end:dualstack-mapped]

	// --8<-- [start:dualstack-bindv6only]
	It("follows net.ipv6.bindv6only: where it is 1, refserver's [::] listener refuses IPv4",
		Label("claim:dualstack.mapped"), func() {
			seen := lab.RunInSandbox(ch9Child, ch9Arg{}, lab.SandboxOptions{
				Sysctls: map[string]string{"net.ipv6.bindv6only": "1"}})
			lab.Record(evidence.EntryDualStack, seen)
			Expect(seen.Clients).NotTo(BeEmpty())
			l6, v4 := seen.Wildcard6, seen.Clients[0]
			lab.Cite(evidence.Figures{"strict_bindv6only": seen.BindV6Only, "strict_v6only": *l6.V6Only,
				"strict_errno": v4.Errno, "strict_beside": seen.Wildcard4.Addr})

			// --8<-- [start:dualstack-bindv6only-proof]
			// The same refserver, the same Config: only the namespace's default differs.
			Expect(strconv.Itoa(*l6.V6Only)).To(Equal(seen.BindV6Only), "IPV6_V6ONLY, bindv6only")
			Expect(*l6.V6Only).To(Equal(1), "IPV6_V6ONLY on %s", l6.Addr)
			// No listener takes IPv4 on the port: the kernel answers the SYN with RST.
			Expect(v4.Errno).To(Equal("ECONNREFUSED"), "an IPv4 client to %s", v4.To)
			Expect(seen.Wildcard4.Errno).To(BeEmpty(), "refserver on %s", seen.Wildcard4.Asked)
			// --8<-- [end:dualstack-bindv6only-proof]
		})
	// --8<-- [end:dualstack-bindv6only]

	// --8<-- [start:dualstack-v6only]
	It("with IPV6_V6ONLY, binds [::] and 0.0.0.0 on one port side by side, each for its own family",
		Label("claim:dualstack.v6only"), func() {
			seen := lab.RunInSandbox(ch9Child, ch9Arg{V6Only: true}, lab.SandboxOptions{})
			lab.Record(evidence.EntryDualStack, seen)
			l6, l4 := seen.Wildcard6, seen.Wildcard4
			Expect(seen.Clients).To(HaveLen(3), "clients: IPv4 and IPv6 to [::], then IPv4")
			before, v6, after := seen.Clients[0], seen.Clients[1], seen.Clients[2]
			lab.Cite(evidence.Figures{"bindv6only": seen.BindV6Only, "v6only": *l6.V6Only,
				"listener": l6.Addr, "refused": before.Errno, "listener4": l4.Addr,
				"client6": v6.SeenAs, "seen_as": after.SeenAs, "server": after.Server,
				"accepted6": l6.Accepted, "accepted4": l4.Accepted,
				"greeting": after.Greeting, "greeting6": v6.Greeting})

			// --8<-- [start:dualstack-v6only-proof]
			// Config.V6Only: refserver set IPV6_V6ONLY before bind, and said so.
			Expect(l6.Narration).To(ContainElement(MatchRegexp(
				`^setsockopt\(\d+, IPPROTO_IPV6, IPV6_V6ONLY, 1\) = 0$`)))
			Expect(*l6.V6Only).To(Equal(1), "IPV6_V6ONLY on %s, read back", l6.Addr)
			// Alone on the port, the [::] listener does not take IPv4: refused (RST).
			Expect(before.Errno).To(Equal("ECONNREFUSED"), "an IPv4 client to %s", before.To)
			Expect(v6.SeenAs).To(HavePrefix("[::1]:"), "an IPv6 client to %s", v6.To)

			// 0.0.0.0 and the same port bind beside it...
			Expect(l4.Errno).To(BeEmpty(), "refserver on %s", l4.Asked)
			Expect(l4.Domain).To(Equal("AF_INET"))
			Expect(l4.Addr).To(Equal(ch9At("0.0.0.0", ch9Port(l6)).String()))
			// ...and the next IPv4 client reaches that one, unmapped: 127.0.0.1 on both ends.
			Expect(after.Errno).To(BeEmpty(), "an IPv4 client to %s", after.To)
			seenAs := netip.MustParseAddrPort(after.SeenAs)
			Expect(seenAs.Addr().Is4()).To(BeTrue(), "the client, as refserver saw it: %s", seenAs)
			Expect(after.Server).To(Equal(ch9At("127.0.0.1", ch9Port(l6)).String()))
			// Each served its own family: one connection each.
			Expect(l6.Accepted).To(BeEquivalentTo(1), "connections %s accepted", l6.Addr)
			Expect(l4.Accepted).To(BeEquivalentTo(1), "connections %s accepted", l4.Addr)
			// --8<-- [end:dualstack-v6only-proof]
		})
	// --8<-- [end:dualstack-v6only]
})

// ch9Port is the port refserver's listener l bound.
func ch9Port(l evidence.DualStackListener) uint16 {
	GinkgoHelper()
	ap, err := netip.ParseAddrPort(l.Addr)
	Expect(err).NotTo(HaveOccurred(), "refserver's address %q", l.Addr)
	return ap.Port()
}

// ch9Ends is a tuple's two ends.
type ch9Ends struct{ local, remote netip.AddrPort }

func ch9Tuple(s string) ch9Ends {
	GinkgoHelper()
	var proto, arrow, l, r string
	_, err := fmt.Sscan(s, &proto, &l, &arrow, &r)
	Expect(err).NotTo(HaveOccurred(), "tuple %q", s)
	return ch9Ends{netip.MustParseAddrPort(l), netip.MustParseAddrPort(r)}
}
