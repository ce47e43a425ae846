//go:build linux

package specs

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"

	"portproof/internal/procfs"
	"portproof/refserver/sock"
	"portproof/specs/evidence"
	"portproof/specs/lab"
)

// ch3Many is how many connections limit.many-per-port holds open at once: the "at least
// 1000" of claims.md.
const ch3Many = 1000

var _ = Describe(Limits.Title, Label("chapter:3"), func() {
	for _, fam := range lab.Families() {
		// --8<-- [start:limit-many-per-port]
		It("holds a thousand established connections on one listening port, "+
			"all on the listener's address and port, over "+fam.String(),
			Label("claim:limit.many-per-port", fam.Name), func() {
				lab.RequireFamily(fam)
				// A backlog of ch3Many, capped by net.core.somaxconn: each connection is
				// accepted as soon as its handshake is done anyway.
				l := lab.Listen(fam.At(0), ch3Many)
				// Plain descriptors, closed together at the end: two thousand sockets each
				// with a cleanup of its own would spend the time on bookkeeping, not on the
				// kernel.
				var clients, servers []int
				DeferCleanup(func() { lab.CloseAll(clients); lab.CloseAll(servers) })
				for i := range ch3Many {
					c, err := lab.DialTo(l.Addr)
					Expect(err).NotTo(HaveOccurred(), "connection %d", i+1)
					clients = append(clients, c)
					s, _, err := lab.AcceptOn(l.FD(), lab.AcceptWithin)
					Expect(err).NotTo(HaveOccurred(), "accept %d", i+1)
					servers = append(servers, s)
				}

				// Every one is open now. Read each from the kernel: its state (TCP_INFO)
				// and both ends' 4-tuples (getsockname, getpeername).
				seen := evidence.ConnectionCensus{Listener: l.Addr.String()}
				tuples := map[sock.Tuple]bool{}
				locals := map[netip.AddrPort]bool{}
				var clientPorts []uint16
				var samples []evidence.TupleSeen
				sampleNames := map[int]string{0: "first", 1: "second", len(servers) - 1: "last"}
				for i, s := range servers {
					st, err := sock.TupleOf(s)
					Expect(err).NotTo(HaveOccurred())
					ct, err := sock.TupleOf(clients[i])
					Expect(err).NotTo(HaveOccurred())
					tuples[st] = true
					locals[st.Local] = true
					clientPorts = append(clientPorts, ct.Local.Port())
					if lab.TCPState(s) == "ESTABLISHED" &&
						lab.TCPState(clients[i]) == "ESTABLISHED" {
						seen.Established++
					}
					// A few of them, as both ends read them, for the report.
					if name := sampleNames[i]; name != "" {
						samples = append(samples, evidence.TupleSeen{
							Conn: name, Client: ct.String(), Server: st.String()})
					}
				}
				seen.DistinctTuples = len(tuples)
				for a := range locals {
					seen.ServerLocal = append(seen.ServerLocal, a.String())
				}
				seen.ClientPortsLow, seen.ClientPortsHigh = ch3MinMax(clientPorts)
				distinct := map[uint16]bool{}
				for _, p := range clientPorts {
					distinct[p] = true
				}
				seen.ClientPorts = len(distinct)
				// The kernel's own table, /proc/net/tcp or tcp6 (what netstat -tn reads): the
				// sockets in state ESTABLISHED whose local end is the listener's address and
				// port. Counted there, not by us, so a socket we hold but the kernel does not
				// cannot pass.
				err := procfs.EachTCP(fam.Domain, func(r procfs.TCPRow) {
					if r.State == procfs.TCPEstablished && r.Local == l.Addr {
						seen.KernelTable++
					}
				})
				Expect(err).NotTo(HaveOccurred())

				lab.Record(evidence.EntryConnections, seen)
				lab.Record(evidence.EntryPorts, evidence.Ports{
					"listener": {l.Addr.Port()}, "accepted": ch3PortsOf(locals)})
				lab.Record(evidence.EntryTuples, samples)
				hostRange := lab.LocalPortRange()
				lab.Cite(evidence.Figures{
					"accepted":          len(servers),
					"established":       seen.Established,
					"kernel_table":      seen.KernelTable,
					"distinct_tuples":   seen.DistinctTuples,
					"listener":          seen.Listener,
					"client_ports":      seen.ClientPorts,
					"client_ports_low":  seen.ClientPortsLow,
					"client_ports_high": seen.ClientPortsHigh,
					"range_low":         hostRange.Low,
					"range_high":        hostRange.High,
				})

				// --8<-- [start:limit-many-per-port-core]
				// One local address and port for every accepted socket, the listener's:
				// getsockname on the new descriptors from accept4(2) never answered another.
				Expect(seen.ServerLocal).To(ConsistOf(l.Addr.String()))
				// At least a thousand at once, both ends ESTABLISHED by TCP_INFO, and as many
				// in the kernel's table...
				Expect(seen.Established).To(BeNumerically(">=", ch3Many))
				Expect(seen.KernelTable).To(BeNumerically(">=", ch3Many))
				// ...each a 4-tuple of its own, no two accepted sockets alike: with the
				// server's end fixed, the client's port tells them apart
				// (__inet_lookup_established hashes all four).
				Expect(seen.DistinctTuples).To(Equal(len(servers)))
				// The client's end is where they differ: every source port (getsockname on
				// the clients) is the client's kernel's pick from the ephemeral range.
				for _, p := range clientPorts {
					Expect(hostRange.Contains(p)).To(BeTrue(),
						"client port %d outside %s", p, hostRange)
				}
				// --8<-- [end:limit-many-per-port-core]
			})
		// --8<-- [end:limit-many-per-port]
	}

	for _, fam := range lab.Families() {
		// --8<-- [start:limit-per-destination]
		It("lets one client open as many connections to one server port as its ephemeral "+
			"range has ports, then refuses with EADDRNOTAVAIL, over "+fam.String(),
			Label("claim:limit.per-destination", fam.Name), func() {
				lab.RequireFamily(fam)
				// The correction first, read only: the host's range, and the range the kernel
				// gives a new network namespace, where nobody has tuned it.
				host := lab.LocalPortRange()
				def := lab.RunInSandbox(ch3DefaultRangeChild, struct{}{}, lab.SandboxOptions{})
				lab.Record(evidence.EntryPortRangeDefault,
					evidence.DefaultRange{Host: host, KernelDefault: def, Article: 1 << 16})

				// In a sandbox the range is narrowed to ten ports, so that it runs out in ten
				// connect()s. The server listens on a port outside it: one inside would take a
				// port of the ten.
				arg := ch3FillArg{Server: fam.At(ch3ServerPort)}
				seen := lab.RunInSandbox(ch3FillChild, arg, lab.SandboxOptions{
					Sysctls: map[string]string{lab.PortRangeSysctl: ch3NarrowRange},
				})
				b := seen.Batch
				lab.Record(evidence.EntryPortRange, seen.Range)
				lab.Record(evidence.EntryPortBatches, []evidence.PortBatch{b})
				lab.Record(evidence.EntryErrno, b.Refused)
				lab.Record(evidence.EntryPortPattern, evidence.PortPattern{
					Parity: map[string]evidence.Parity{"connect": evidence.ParityOf(b.Ports)},
					Steps:  lab.StepsOf(b.Ports),
				})
				lab.Cite(evidence.Figures{
					"host_low": host.Low, "host_high": host.High, "host_size": host.Size,
					"default_low": def.Low, "default_high": def.High, "default_size": def.Size,
					"narrow_low": seen.Range.Low, "narrow_high": seen.Range.High,
					"narrow_size": seen.Range.Size,
					"connected":   len(b.Ports), "refused": b.Refused.Errno, "ports": b.Ports,
					// connect() walks the ports of the range's low end's parity first
					// (__inet_hash_connect): how many came out before the other parity's first.
					"low_parity":       evidence.ParityName(seen.Range.Low),
					"low_parity_first": ch3SameParityRun(b.Ports, seen.Range.Low),
				})

				// --8<-- [start:limit-per-destination-core]
				// As many connections as the range the kernel read back holds, every one
				// ESTABLISHED, each from a port of the range (getsockname), no port twice...
				Expect(b.Ports).To(HaveLen(seen.Range.Size),
					"connections to %s with %s %s", b.To, seen.Range.Sysctl, seen.Range)
				Expect(b.Established).To(Equal(len(b.Ports)))
				for _, p := range b.Ports {
					Expect(seen.Range.Contains(p)).To(BeTrue(),
						"source port %d outside %s", p, seen.Range)
				}
				Expect(duplicates(b.Ports)).To(BeEmpty())
				// ...and the next connect(2) fails at once with EADDRNOTAVAIL: no source port
				// is left for this destination (__inet_hash_connect).
				Expect(errors.Is(b.Errno, unix.EADDRNOTAVAIL)).To(BeTrue(),
					"connect number %d: want EADDRNOTAVAIL, got %s", len(b.Ports)+1, b.Refused.Error)
				// The limit is the range, not 64K: a new namespace starts with the range
				// inet_init_net (net/ipv4/af_inet.c) sets, 32768-60999, as
				// Documentation/networking/ip-sysctl.rst documents for ip_local_port_range.
				Expect(def).To(Equal(evidence.PortRange{
					Low: 32768, High: 60999, Size: 28232, Sysctl: lab.PortRangeSysctl,
				}), "a new network namespace's %s", lab.PortRangeSysctl)
				// --8<-- [end:limit-per-destination-core]
			})
		// --8<-- [end:limit-per-destination]
	}

	// IPv4 only: a second server address and a second client address are free on IPv4's lo,
	// which answers for all of 127.0.0.0/8, while on IPv6 lo has the one address ::1.
	// --8<-- [start:limit-multiply]
	It("gives a fresh range of source ports toward another server port, another server "+
		"address, and from another client address, over "+lab.IPv4.String(),
		Label("claim:limit.multiply", lab.IPv4.Name), func() {
			lab.RequireFamily(lab.IPv4)
			seen := lab.RunInSandbox(ch3MultiplyChild, struct{}{}, lab.SandboxOptions{
				Sysctls: map[string]string{lab.PortRangeSysctl: ch3NarrowRange},
			})
			lab.Record(evidence.EntryPortRange, seen.Range)
			lab.Record(evidence.EntryPortBatches,
				slices.Concat(seen.Batches, []evidence.PortBatch{seen.Again}, seen.Bound))
			Expect(seen.Batches).To(HaveLen(4))
			Expect(seen.Bound).To(HaveLen(3))
			figures := evidence.Figures{
				"narrow_low": seen.Range.Low, "narrow_high": seen.Range.High,
				"narrow_size":     seen.Range.Size,
				"again_connected": len(seen.Again.Ports), "again_refused": seen.Again.Refused.Errno,
			}
			// Each batch's figures by a short name: first_connected, bind_refused_by...
			names := []string{"first", "port2", "addr2", "client2", "bind", "noport", "fresh"}
			for i, b := range slices.Concat(seen.Batches, seen.Bound) {
				figures[names[i]+"_to"] = b.To
				figures[names[i]+"_from"] = b.From
				figures[names[i]+"_connected"] = len(b.Ports)
				figures[names[i]+"_refused"] = b.Refused.Errno
				figures[names[i]+"_refused_by"] = b.Refused.Call
			}
			lab.Cite(figures)

			// --8<-- [start:limit-multiply-core]
			for _, b := range seen.Batches {
				// Each destination, or source address, takes the whole range again: as many
				// connections as the range the kernel read back, all ESTABLISHED, each on a
				// port of the range, and then EADDRNOTAVAIL.
				Expect(b.Ports).To(HaveLen(seen.Range.Size), "%s: %s", b.Batch, b.Refused.Error)
				Expect(b.Established).To(Equal(len(b.Ports)), b.Batch)
				Expect(duplicates(b.Ports)).To(BeEmpty(), b.Batch)
				for _, p := range b.Ports {
					Expect(seen.Range.Contains(p)).To(BeTrue(),
						"%s: port %d outside %s", b.Batch, p, seen.Range)
				}
				Expect(errors.Is(b.Errno, unix.EADDRNOTAVAIL)).To(BeTrue(),
					"%s: want EADDRNOTAVAIL, got %s", b.Batch, b.Refused.Error)
			}
			// The same source ports served every batch: a port is spent per 4-tuple, not per
			// client, so the second, third and fourth batches reused the first one's.
			first := seen.Batches[0].Ports
			for _, b := range seen.Batches[1:] {
				Expect(b.Ports).To(ConsistOf(first), b.Batch)
			}
			// And the first destination is still exhausted: the fresh ports were fresh only
			// for the new tuples.
			Expect(seen.Again.Ports).To(BeEmpty())
			Expect(errors.Is(seen.Again.Errno, unix.EADDRNOTAVAIL)).To(BeTrue(),
				"again to the first destination: %s", seen.Again.Refused.Error)
			// --8<-- [end:limit-multiply-core]

			// --8<-- [start:limit-multiply-bind-core]
			// Where IP_BIND_ADDRESS_NO_PORT matters: the second client address has spent the
			// range toward the first server port, and now talks to the second. A port chosen
			// by bind(2) must be free on that address whatever the peer: none is, and the
			// first bind fails with EADDRINUSE (inet_csk_get_port). With the option,
			// connect(2) chooses per 4-tuple, and the whole range is there again.
			byBind, byConnect, fresh := seen.Bound[0], seen.Bound[1], seen.Bound[2]
			Expect(byBind.Ports).To(BeEmpty(), byBind.Batch)
			Expect(byBind.Refused.Call).To(Equal("bind"), byBind.Batch)
			Expect(errors.Is(byBind.Errno, unix.EADDRINUSE)).To(BeTrue(),
				"%s: want EADDRINUSE, got %s", byBind.Batch, byBind.Refused.Error)
			Expect(byConnect.Ports).To(ConsistOf(first), byConnect.Batch)
			Expect(byConnect.Established).To(Equal(len(byConnect.Ports)), byConnect.Batch)
			Expect(errors.Is(byConnect.Errno, unix.EADDRNOTAVAIL)).To(BeTrue(),
				"%s: want EADDRNOTAVAIL, got %s", byConnect.Batch, byConnect.Refused.Error)
			// From an address that has spent nothing, bind choosing does as well as connect
			// toward one destination: the whole range, then EADDRINUSE from bind.
			Expect(fresh.Ports).To(ConsistOf(first), fresh.Batch)
			Expect(fresh.Established).To(Equal(len(fresh.Ports)), fresh.Batch)
			Expect(fresh.Refused.Call).To(Equal("bind"), fresh.Batch)
			Expect(errors.Is(fresh.Errno, unix.EADDRINUSE)).To(BeTrue(),
				"%s: want EADDRINUSE, got %s", fresh.Batch, fresh.Refused.Error)
			// --8<-- [end:limit-multiply-bind-core]
		})
	// --8<-- [end:limit-multiply]

	for _, fam := range lab.Families() {
		// --8<-- [start:limit-fd]
		It("spends one descriptor per accepted connection, and fails accept4 with EMFILE "+
			"long before ports run out, over "+fam.String(),
			Label("claim:limit.fd", fam.Name), func() {
				lab.RequireFamily(fam)
				seen := lab.RunInSandbox(ch3DescriptorsChild, ch3FDArg{Listen: fam.At(0)},
					lab.SandboxOptions{NoFile: ch3NoFile})
				lab.Record(evidence.EntryDescriptors, seen)
				lab.Record(evidence.EntryErrno, seen.Refused)
				Expect(seen.Steps).NotTo(BeEmpty(), "no accept4 whose descriptors could be counted")
				first, last := seen.Steps[0], seen.Steps[len(seen.Steps)-1]
				above := []string{}
				for _, d := range seen.Above {
					above = append(above, fmt.Sprintf("%d (%s)", d.FD, d.Target))
				}
				if len(above) == 0 {
					above = append(above, "none")
				}
				lab.Cite(evidence.Figures{
					"soft": seen.Soft, "open_at_start": seen.OpenAtStart, "clients": seen.Clients,
					"queued": seen.QueueBefore.Len, "accepted": seen.Accepted,
					"first_before": first.Before, "first_after": first.After,
					"last_before": last.Before, "last_after": last.After,
					"refused": seen.Refused.Errno, "highest": seen.Soft - 1,
					"above_limit": above, "above_limit_count": len(seen.Above),
					"still_queued": seen.QueueAtRefusal.Len,
					"ports_used":   seen.PortsUsed, "range_size": seen.Range.Size,
				})

				Expect(seen.Soft).To(Equal(uint64(ch3NoFile)), "the child's RLIMIT_NOFILE (getrlimit)")
				Expect(seen.Accepted).To(BeNumerically(">=", 2))
				// --8<-- [start:limit-fd-core]
				// Each accept4 made exactly one new descriptor, by /proc/self/fd (the last
				// one's count could not be read: reading /proc/self/fd needs a descriptor too).
				Expect(seen.Steps).To(HaveLen(seen.Accepted - 1))
				for _, st := range seen.Steps {
					Expect(st.After-st.Before).To(Equal(1), "descriptors around one accept4: %+v", st)
				}
				// Then accept4 failed with EMFILE: every descriptor number below the soft
				// limit was open (fcntl F_GETFD answered for each)...
				Expect(errors.Is(seen.Errno, unix.EMFILE)).To(BeTrue(),
					"accept4: want EMFILE, got %s", seen.Refused.Error)
				Expect(seen.AllOpen).To(BeTrue(), "descriptors 0..%d all open at EMFILE", seen.Soft-1)
				// ...and each of them is accounted for: those open before the first client,
				// the clients, and the accepted ones. A descriptor numbered above the limit is
				// not among them: it takes no room below the limit.
				Expect(seen.OpenAtStart+seen.Clients+seen.Accepted).To(Equal(int(seen.Soft)),
					"descriptors below the limit: %d at start, %d clients, %d accepted",
					seen.OpenAtStart, seen.Clients, seen.Accepted)
				// ...with connections still in the accept queue (TCP_INFO), which had held
				// every client before the first accept4: the kernel had them, the process had
				// no number to give them. The queue lost exactly the connections accepted.
				Expect(int(seen.QueueBefore.Len)).To(Equal(seen.Clients))
				Expect(seen.QueueAtRefusal.Len).To(BeNumerically(">", 0))
				Expect(int(seen.QueueBefore.Len)).To(Equal(seen.Accepted + int(seen.QueueAtRefusal.Len)))
				// And the ports were nowhere near used: what is left of the range (read in the
				// child) could take more connections than the whole descriptor limit.
				Expect(seen.Range.Size-seen.PortsUsed).To(BeNumerically(">", int(seen.Soft)),
					"%d ports used of %s", seen.PortsUsed, seen.Range)
				// --8<-- [end:limit-fd-core]
			})
		// --8<-- [end:limit-fd]
	}

	// --8<-- [start:limit-fd-config]
	It("lets setrlimit move the soft descriptor limit up to the hard limit and no further, "+
		"and reads the kernel's ceilings",
		Label("claim:limit.fd-config"), func() {
			soft, hard, err := sock.DescriptorLimit()
			Expect(err).NotTo(HaveOccurred())
			seen := lab.RunInSandbox(ch3RlimitChild, struct{}{}, lab.SandboxOptions{})
			// The ceilings, read only: fs.nr_open bounds any process's hard limit (do_prlimit
			// answers EPERM above it, whatever the capabilities), fs.file-max the whole
			// system's open files (ENFILE past it, alloc_empty_file in fs/file_table.c).
			seen.Host = evidence.Rlimit{Soft: soft, Hard: hard}
			seen.NrOpen = uint64(lab.SysctlInt("fs.nr_open"))
			seen.FileMax = uint64(lab.SysctlInt("fs.file-max"))
			if !seen.Kept.InitialUserNS || !seen.Kept.CapResource {
				seen.CapNote = fmt.Sprintf("CAP_SYS_RESOURCE is held in the initial user "+
					"namespace nowhere this run reaches (CapEff %s, initial user namespace: "+
					"%t): the raise that succeeds with it is not shown",
					seen.Kept.CapEff, seen.Kept.InitialUserNS)
			}
			lab.Record(evidence.EntryRlimitNoFile, seen)

			byCall := map[string]evidence.SetrlimitSeen{}
			for _, s := range seen.Calls {
				byCall[s.Call] = s
			}
			h := seen.Start.Hard
			low, back, over := byCall[ch3CallLower], byCall[ch3CallRaise], byCall[ch3CallSoftAboveHard]
			Expect(seen.Dropped.Calls).To(HaveLen(2))
			down, denied := seen.Dropped.Calls[0], seen.Dropped.Calls[1]
			Expect(seen.Kept.Calls).To(HaveLen(1))
			kept := seen.Kept.Calls[0]
			Expect(seen.GoStart).To(HaveLen(2))
			handed, full := seen.GoStart[0], seen.GoStart[1]
			figures := evidence.Figures{
				"host_soft": soft, "host_hard": hard, "start_soft": seen.Start.Soft, "start_hard": h,
				"lowered_soft": low.After.Soft, "raised_soft": back.After.Soft,
				"over_soft": over.Soft, "over_refused": over.Name,
				"hard_lowered": down.After.Hard, "hard_asked": denied.Hard,
				"hard_refused": denied.Name, "hard_after_refusal": denied.After.Hard,
				"kept_initial_ns": seen.Kept.InitialUserNS, "kept_cap": seen.Kept.CapResource,
				"kept_answer": ch3Answer(kept), "kept_after": kept.After.Hard,
				"nr_open": seen.NrOpen, "file_max": seen.FileMax,
				"go_handed_soft": handed.Handed.Soft, "go_handed_hard": handed.Handed.Hard,
				"go_start_soft": handed.AtStart.Soft, "go_start_hard": handed.AtStart.Hard,
				"go_handed_full": full.Handed.Soft, "go_start_full": full.AtStart.Soft,
				"userns_cap": false, "userns_answer": "none: " + seen.UserNSRefused,
			}
			if u := seen.UserNS; u != nil && len(u.Calls) == 2 {
				figures["userns_cap"] = u.CapResource
				figures["userns_answer"] = ch3Answer(u.Calls[1])
			}
			lab.Cite(figures)

			// --8<-- [start:limit-fd-config-core]
			// Down and back up to the hard limit, no privilege needed: getrlimit reads back
			// what setrlimit set.
			Expect(low.Errno).To(BeZero(), low.Error)
			Expect(low.After).To(Equal(evidence.Rlimit{Soft: low.Soft, Hard: h}))
			Expect(back.Errno).To(BeZero(), back.Error)
			Expect(back.After).To(Equal(evidence.Rlimit{Soft: h, Hard: h}))
			// Soft above hard: EINVAL (do_prlimit), nothing changed.
			Expect(errors.Is(over.Errno, unix.EINVAL)).To(BeTrue(), "soft above hard: %s", over.Error)
			Expect(over.After).To(Equal(back.After))
			// --8<-- [end:limit-fd-config-core]

			// --8<-- [start:limit-fd-config-cap-core]
			// The hard limit lowered by a thread without CAP_SYS_RESOURCE (CapEff, from
			// /proc/thread-self/status), then asked back: not above fs.nr_open, so the EPERM
			// is do_prlimit's capable(CAP_SYS_RESOURCE) answering, not its nr_open check.
			Expect(seen.Dropped.CapResource).To(BeFalse(), "CapEff %s", seen.Dropped.CapEff)
			Expect(down.Errno).To(BeZero(), down.Error)
			Expect(down.After.Hard).To(Equal(h - 1))
			Expect(denied.Hard).To(BeNumerically("<=", seen.Dropped.NrOpen))
			Expect(errors.Is(denied.Errno, unix.EPERM)).To(BeTrue(),
				"hard limit raised back: %s", denied.Error)
			Expect(denied.After).To(Equal(down.After))
			// Asked back by a thread with the process's own capabilities: capable() looks in
			// the initial user namespace, so it succeeds only where CAP_SYS_RESOURCE is in
			// the effective set there.
			if seen.Kept.InitialUserNS && seen.Kept.CapResource {
				Expect(kept.Errno).To(BeZero(), kept.Error)
				Expect(kept.After.Hard).To(Equal(h))
			} else {
				Expect(errors.Is(kept.Errno, unix.EPERM)).To(BeTrue(),
					"hard limit raised back, CapEff %s: %s", seen.Kept.CapEff, kept.Error)
				Expect(kept.After.Hard).To(Equal(h - 1))
			}
			// The root of a user namespace holds CAP_SYS_RESOURCE in it, and is refused all
			// the same: capable() asks about the initial user namespace.
			if u := seen.UserNS; u != nil {
				Expect(u.InitialUserNS).To(BeFalse())
				Expect(u.CapResource).To(BeTrue(), "CapEff %s in the user namespace", u.CapEff)
				Expect(u.Calls).To(HaveLen(2))
				Expect(u.Calls[0].Errno).To(BeZero(), u.Calls[0].Error)
				Expect(u.Calls[1].Hard).To(BeNumerically("<=", u.NrOpen))
				Expect(errors.Is(u.Calls[1].Errno, unix.EPERM)).To(BeTrue(),
					"hard limit raised back in a user namespace: %s", u.Calls[1].Error)
				Expect(u.Calls[1].After).To(Equal(u.Calls[0].After))
			}
			// --8<-- [end:limit-fd-config-cap-core]

			// What the Go runtime does at start-up (syscall/rlimit.go), seen in the child's
			// own child: handed a soft limit below hard-1 (getrlimit in the parent), it starts
			// at hard-1; handed the hard limit, it leaves it.
			Expect(handed.Handed.Soft).To(BeNumerically("<", handed.Handed.Hard-1))
			Expect(handed.AtStart).To(Equal(
				evidence.Rlimit{Soft: handed.Handed.Hard - 1, Hard: handed.Handed.Hard}))
			Expect(full.Handed.Soft).To(Equal(full.Handed.Hard))
			Expect(full.AtStart).To(Equal(full.Handed))
		})
	// --8<-- [end:limit-fd-config]
})

// ch3Answer is what the kernel answered a setrlimit: "success", or the errno's name.
func ch3Answer(s evidence.SetrlimitSeen) string {
	if s.Errno == 0 {
		return "success"
	}
	return s.Name
}

// ch3SameParityRun counts the ports at the start of ports that have the parity of like.
func ch3SameParityRun(ports []uint16, like uint16) int {
	for i, p := range ports {
		if p%2 != like%2 {
			return i
		}
	}
	return len(ports)
}

func ch3MinMax(ports []uint16) (lo, hi uint16) {
	for i, p := range ports {
		if i == 0 || p < lo {
			lo = p
		}
		if p > hi {
			hi = p
		}
	}
	return lo, hi
}

func ch3PortsOf(addrs map[netip.AddrPort]bool) []uint16 {
	var ports []uint16
	for a := range addrs {
		ports = append(ports, a.Port())
	}
	return ports
}
