// Package specs proves, on the reader's own kernel, each claim of the article
// "Understanding socket and port in TCP" (Part I), and the answers to the questions a reader
// asks next (Part II). The proofs are the Ginkgo specs of this directory (go test ./specs),
// one file per chapter; this file is the registry they prove: every claim of
// ../shared/claims.md with its words (the article's, or for Part II the reader's question and
// the standard or manual page that states the behaviour) and the verdict. It imports nothing
// but the standard library, so that a docs generator can read it without the test harness.
package specs

// Verdict is what the kernel says of a claim: of the article's words in Part I, of the
// source's in Part II.
type Verdict string

const (
	True      Verdict = "true"      // the kernel does what the words say
	Qualified Verdict = "qualified" // true as far as it goes; the kernel shows what it leaves out
	Corrected Verdict = "corrected" // wrong, or out of date: the spec proves what is true instead
)

// Part is the half of the tutorial a chapter belongs to.
type Part int

const (
	Article Part = 1 // Part I: the article's questions, in its order
	Beyond  Part = 2 // Part II: the questions a reader asks next
)

// Chapter is one question of the tutorial, as the chapters and the specs' Describe name it.
type Chapter struct {
	Number int    `json:"number"`
	Title  string `json:"title"`
	Part   Part   `json:"part"`
}

// The chapters, in order. Each spec file's Describe is named by Title. Chapters lists those
// the registry covers: a chapter of claims.md joins it with its claims and its specs.
var (
	FiveTuple     = Chapter{1, "What defines a unique connection?", Article}
	OnePort       = Chapter{2, "Does TCP listen on one port and talk on another?", Article}
	Limits        = Chapter{3, "How many concurrent connections can a server handle?", Article}
	Backlog       = Chapter{4, "Concurrent connection requests vs concurrent open connections", Article}
	Handshake     = Chapter{5, "Why is a connection rejected after a successful handshake?", Article}
	ActivePassive = Chapter{6, "Active and passive sockets", Article}
	Chapters      = []Chapter{FiveTuple, OnePort, Limits, Backlog, Handshake, ActivePassive,
		Closing, Queues, DualStack, Epoll}
)

// Part II: how a connection ends, the queues before accept() again, one socket and two
// families, and epoll.
var (
	Closing   = Chapter{7, "Closing: FIN, RST and TIME_WAIT", Beyond}
	Queues    = Chapter{8, "The queues again: SYN_RECV, deferred accept and SYN cookies", Beyond}
	DualStack = Chapter{9, "One socket, two families: IPv6 dual stack", Beyond}
	Epoll     = Chapter{10, "epoll and the C10K problem", Beyond}
)

// Claim is one claim the specs prove. A spec that proves it carries the label "claim:"+ID.
type Claim struct {
	ID      string  `json:"id"`
	Chapter Chapter `json:"chapter"`
	// Quote is, in Part I, the article's words, verbatim, its spelling and typography kept.
	Quote string `json:"quote,omitempty"`
	// Question is, in Part II, the reader's question, as claims.md asks it ("" where the
	// claim goes on from the one before it).
	Question string `json:"question,omitempty"`
	// Source is, in Part II, the standard or manual page that states the behaviour, and
	// SourceQuote its words, quoted in the chapter as Part I quotes the article.
	Source      string  `json:"source,omitempty"`       // "RFC 9293, section 3.6", "tcp(7)"
	SourceQuote string  `json:"source_quote,omitempty"` // its words, verbatim
	Verdict     Verdict `json:"verdict"`
	Why         string  `json:"why"` // one sentence: what the kernel really does
}

// Label is the Ginkgo label of the specs that prove the claim.
func (c Claim) Label() string { return "claim:" + c.ID }

// Claims is every claim of claims.md, in its order.
var Claims = []Claim{
	{
		ID: "tuple.identity", Chapter: FiveTuple, Verdict: True,
		Quote: "There are 5 elements that identify a connection.",
		Why: "The kernel names a connection by protocol, local address and port, remote address and port: " +
			"two connections from one client to one listener differ only in the client's port, " +
			"and the server's end reads the same tuple mirrored.",
	},
	{
		ID: "tuple.unique", Chapter: FiveTuple, Verdict: True,
		Quote: "What defines a unique connection ?",
		Why: "No two TCP connections share a 4-tuple: a second socket on the same address and port " +
			"cannot connect to the same destination (EADDRNOTAVAIL) but can connect to another port, " +
			"because that changes the tuple.",
	},
	{
		ID: "tuple.protocol", Chapter: FiveTuple, Verdict: Qualified,
		Quote: "Protocol. This is often omitted as it is understood that we are talking about TCP, which leaves 4.",
		Why: "Leaving the protocol out is safe only while everything is TCP: the kernel keeps TCP and UDP ports apart, " +
			"so a TCP and a UDP socket hold the same port number at once, each with its own traffic.",
	},
	{
		ID: "port.same", Chapter: OnePort, Verdict: True,
		Quote: "TCP listens on 1 port and talk on that same port.",
		Why: "Every socket accept() returns has the listener's own address and port as its local end; " +
			"connections are told apart by the client's address and port, not by a new server port.",
	},
	{
		ID: "port.ephemeral", Chapter: OnePort, Verdict: Qualified,
		Quote: "It’s the client OS that must generate different random source ports, so that server can see them as unique connections",
		Why: "The client's kernel picks each source port at connect(), a distinct one from net.ipv4.ip_local_port_range, " +
			"but not uniformly at random: it walks the range from a per-destination offset in small random steps, " +
			"ports of the parity of the range's low end first, and bind() to port 0 takes the other parity first.",
	},
	{
		ID: "limit.many-per-port", Chapter: Limits, Verdict: True,
		Quote: "A single listening port can accept more than one connection simultaneously.",
		Why: "Connections are told apart by their 4-tuple, so one listening port holds thousands of established " +
			"connections at once, all with the same local port.",
	},
	{
		ID: "limit.per-destination", Chapter: Limits, Verdict: Corrected,
		Quote: "Ports are 16-bit numbers, therefore the maximum number of connections any given client can have to any given host port is 64K.",
		Why: "The limit is the client's ephemeral range per source address, destination address and port, " +
			"28,232 ports by default (32768-60999), not 64K; past it connect() fails with EADDRNOTAVAIL.",
	},
	{
		ID: "limit.multiply", Chapter: Limits, Verdict: True,
		Quote: "if the server has multiple ports or either is multi-homed then you can multiply that further",
		Why: "The range is spent per destination: another server port, another server address or another " +
			"client address gives a fresh set of source ports.",
	},
	{
		ID: "limit.fd", Chapter: Limits, Verdict: True,
		Quote: "So the real limit is file descriptors.",
		Why: "Each accepted connection costs the server one descriptor and no port, so RLIMIT_NOFILE stops " +
			"accept() with EMFILE long before the port space runs out.",
	},
	{
		ID: "limit.fd-config", Chapter: Limits, Verdict: Qualified,
		Quote: "The maximum limit is typically up over 300K, but is configurable e.g. with sysctl",
		Why: "A process's limit is RLIMIT_NOFILE, raised with setrlimit up to its hard limit and no further " +
			"without CAP_SYS_RESOURCE; sysctl sets only the ceilings fs.nr_open and fs.file-max.",
	},
	{
		ID: "backlog.queue", Chapter: Backlog, Verdict: True,
		Quote: "When clients want to make TCP connection with server, this request will be queued in server ‘s backlog queue.",
		Why: "connect() completes while the server never calls accept(): the kernel finishes the handshake and " +
			"queues the connection, and TCP_INFO on the listener shows the queue's length and limit.",
	},
	{
		ID: "backlog.size", Chapter: Backlog, Verdict: Corrected,
		Quote: "This backlog queue size is small (about 5–10)",
		Why: "The queue holds backlog+1 connections, whatever listen() asked for up to net.core.somaxconn " +
			"(4096 by default since Linux 5.4), which silently caps a larger backlog.",
	},
	{
		ID: "backlog.full", Chapter: Backlog, Verdict: Qualified,
		Quote: "this size limits the number of concurrent connection requests",
		Why: "A full queue delays requests rather than refusing them: the kernel drops the next SYN without a reply, " +
			"and the client completes after its SYN is retransmitted once the server has accepted one.",
	},
	{
		ID: "backlog.open-vs-pending", Chapter: Backlog, Verdict: True,
		Quote: "The number of concurrent open connections is limited by server ‘s resources allocated for file descriptor.",
		Why: "A listener with a backlog of 1 that keeps accepting holds a thousand open connections: " +
			"the backlog bounds only the connections waiting for accept().",
	},
	{
		ID: "handshake.before-accept", Chapter: Handshake, Verdict: True,
		Quote: "it will then response with SYN, ACK, hence cause successful TCP handshake. But this request are stills in backlog queue.",
		Why: "The kernel completes the three-way handshake, and takes the client's first data, before the server " +
			"calls accept(), which only hands over a finished connection.",
	},
	{
		ID: "handshake.emfile-queued", Chapter: Handshake, Verdict: Corrected,
		Quote: "then when server calls accept, then it realizes that there are no file descriptors available to be the allocated for the socket and fails the accept call and the TCP connection sending a FIN to other side",
		Why: "When accept() fails with EMFILE the kernel sends nothing and keeps the connection queued, so the next " +
			"accept() after a descriptor is freed returns that very connection.",
	},
	{
		ID: "handshake.shed", Chapter: Handshake, Verdict: Qualified,
		Quote: "fails the accept call and the TCP connection sending a FIN to other side",
		Why: "The FIN is a server's choice, not the kernel's: refserver frees a spare descriptor on EMFILE, accepts " +
			"and closes the connection, so the client reads end-of-stream and the server does not spin.",
	},
	{
		ID: "passive.no-data", Chapter: ActivePassive, Verdict: True,
		Quote: "A passive socket is not connected, but rather awaits an incoming connection",
		Why: "A listening socket has no peer: read and getpeername fail with ENOTCONN, send fails with EPIPE, " +
			"and SO_ACCEPTCONN reads 1 on it and 0 on a connected socket.",
	},
	{
		ID: "passive.spawns-active", Chapter: ActivePassive, Verdict: True,
		Quote: "which will spawn a new active socket once a connection is established",
		Why: "Each accept() returns a new descriptor for a connected, active socket while the listener goes on " +
			"listening: N connections hold N+1 descriptors.",
	},
	{
		ID: "passive.one-per-port", Chapter: ActivePassive, Verdict: True,
		Quote: "Each port can have a single passive socket binded to it",
		Why: "For one local address and port, without SO_REUSEPORT, a second listener is refused with EADDRINUSE, " +
			"even with SO_REUSEADDR on both: its bind fails beside a listener, and its listen fails when both sockets " +
			"bound before either listened.",
	},
	{
		ID: "passive.shared-port", Chapter: ActivePassive, Verdict: Qualified,
		Quote: "Each port can have a single passive socket binded to it, awaiting incoming connections",
		Why: "Listeners on different local addresses share a port number, and with SO_REUSEPORT a group of " +
			"listeners shares one address and port, the kernel spreading connections by a hash of the tuple.",
	},

	// Part II, chapter 7: closing.
	{
		ID: "close.half", Chapter: Closing, Verdict: True,
		Question: "Can I stop sending but keep reading?",
		Source:   "RFC 9293, section 3.6",
		SourceQuote: "CLOSE is an operation meaning \"I have no more data to send.\" The notion of closing a " +
			"full-duplex connection is subject to ambiguous interpretation, of course, since it may not be " +
			"obvious how to treat the receiving side of the connection. We have chosen to treat CLOSE in a " +
			"simplex fashion. The user who CLOSEs may continue to RECEIVE until the TCP receiver is told that " +
			"the remote peer has CLOSED also.",
		Why: "shutdown(SHUT_WR) is that CLOSE: it sends one FIN and nothing else, the side that sent it " +
			"(FIN_WAIT2) goes on reading what the peer (CLOSE_WAIT, reading end-of-stream) still sends, " +
			"and refserver's lingering close ends its connections this way.",
	},
	{
		ID: "close.rst-unread", Chapter: Closing, Verdict: True,
		Question: "Does close() always send FIN?",
		Source:   "RFC 2525, section 2.17",
		SourceQuote: "When an application closes a connection in such a way that it can no longer read any " +
			"received data, the TCP SHOULD, per section 4.2.2.13 of RFC 1122, send a RST if there is any " +
			"unread received data, or if any new data is received.",
		Why: "close() on a socket with unread input sends RST and no FIN, so the peer's next read after " +
			"what had reached it fails with ECONNRESET and the bytes it sent are lost unread, while the same " +
			"close with the input read first sends FIN.",
	},
	{
		ID: "close.timewait", Chapter: Closing, Verdict: Qualified,
		Question: "Why does a closed connection still show in ss?",
		Source:   "RFC 9293, section 3.6.1",
		SourceQuote: "When a connection is closed actively, it MUST linger in the TIME-WAIT state for a time " +
			"2xMSL (Maximum Segment Lifetime) (MUST-13).",
		Why: "The side that closes first keeps the connection in TIME_WAIT, with no descriptor, for " +
			"Linux's fixed 60 s (TCP_TIMEWAIT_LEN, not twice the RFC's two-minute MSL, and not " +
			"tcp_fin_timeout, which times an orphan's FIN_WAIT2), while the other side passes through " +
			"CLOSE_WAIT and LAST_ACK and keeps nothing, and SO_LINGER {1, 0} skips it all with an RST.",
	},
	{
		ID: "close.reuseaddr", Chapter: Closing, Verdict: True,
		Question: "Why can't my restarted server bind its port?",
		Source:   "socket(7)",
		SourceQuote: "SO_REUSEADDR Indicates that the rules used in validating addresses supplied in a bind(2) " +
			"call should allow reuse of local addresses. For AF_INET sockets this means that a socket may " +
			"bind, except when there is an active listening socket bound to the address.",
		Why: "After refserver has closed its connections first, their TIME_WAITs hold its port: a plain " +
			"bind() there fails with EADDRINUSE, while refserver's own listener, which sets SO_REUSEADDR, " +
			"binds, listens and serves on it at once.",
	},
	{
		ID: "close.listener-resets", Chapter: Closing, Verdict: Qualified,
		Question: "What happens to connections still queued when a server stops?",
		Source:   "RFC 9293, section 3.10.5",
		SourceQuote: "SYN-RECEIVED STATE, ESTABLISHED STATE, FIN-WAIT-1 STATE, FIN-WAIT-2 STATE, CLOSE-WAIT " +
			"STATE: Send a reset segment: <SEQ=SND.NXT><CTL=RST>. All queued SENDs and RECEIVEs should be " +
			"given \"connection reset\" notification",
		Why: "The RFC's listener holds no queue, but Linux gives each connection still in the accept queue " +
			"of a closing listener this ABORT, an RST at SND.NXT, so every client of refserver's that " +
			"finished its handshake and was never accepted reads ECONNRESET when refserver shuts down.",
	},

	// Part II, chapter 8: the queues again.
	{
		ID: "queue.synrecv", Chapter: Queues, Verdict: Qualified,
		Question: "Can the client think it is connected while the server has no connection?",
		Source:   "tcp(7)",
		SourceQuote: "TCP_DEFER_ACCEPT (since Linux 2.4) Allow a listener to be awakened only when data " +
			"arrives on the socket. Takes an integer value (seconds), this can bound the maximum number of " +
			"attempts TCP will make to complete the connection.",
		Why: "The listener is not woken, and the client is not told: its connect() has returned and it is " +
			"ESTABLISHED while the server holds only a request in SYN_RECV outside the accept queue, and " +
			"when its data finds that queue full the segment is dropped (tcp_abort_on_overflow 0) or " +
			"answered with RST (1).",
	},
	{
		ID: "queue.syncookies", Chapter: Queues, Verdict: True,
		Question: "How does a server survive a SYN flood?",
		Source:   "tcp(7)",
		SourceQuote: "tcp_syncookies (integer; default: 1; since Linux 2.2) Enable TCP syncookies. [...] " +
			"The syncookies feature attempts to protect a socket from a SYN flood attack. [...] " +
			"0 Disable TCP syncookies. 1 Send out syncookies when the syn backlog queue of a socket " +
			"overflows. 2 (since Linux 3.12) Send out syncookies unconditionally.",
		Why: "With cookies the listener answers a SYN and keeps no request, always (2) or once its SYN " +
			"queue is full (1), and the client's ACK still makes the connection, while with 0 the SYNs " +
			"past a full queue are dropped.",
	},

	// Part II, chapter 9: one socket, two families.
	{
		ID: "dualstack.mapped", Chapter: DualStack, Verdict: True,
		Question: "Does a server on [::] take IPv4 clients?",
		Source:   "ipv6(7)",
		SourceQuote: "IPv4 and IPv6 share the local port space. When you get an IPv4 connection or packet to an " +
			"IPv6 socket, its source address will be mapped to v6.",
		Why: "With IPV6_V6ONLY off, as net.ipv6.bindv6only=0 leaves every new AF_INET6 socket, a listener on " +
			"[::]:P accepts IPv4 clients, each seen as ::ffff:a.b.c.d, and holds 0.0.0.0:P too, whose bind then " +
			"fails with EADDRINUSE.",
	},
	{
		ID: "dualstack.v6only", Chapter: DualStack, Verdict: True,
		Source: "ipv6(7)",
		SourceQuote: "If this flag is set to true (nonzero), then the socket is restricted to sending and receiving " +
			"IPv6 packets only. In this case, an IPv4 and an IPv6 application can bind to a single port at the same time.",
		Why: "With IPV6_V6ONLY set (refserver's V6Only), [::]:P refuses IPv4 clients and a second refserver binds " +
			"0.0.0.0:P beside it, each listener serving its own family alone.",
	},

	// Part II, chapter 10: epoll and the C10K problem.
	{
		ID: "epoll.level", Chapter: Epoll, Verdict: True,
		Question: "Why does my event loop spin?",
		Source:   "epoll(7)",
		SourceQuote: "By contrast, when used as a level-triggered interface (the default, when EPOLLET is not " +
			"specified), epoll is simply a faster poll(2), and can be used wherever the latter is used since it " +
			"shares the same semantics.",
		Why: "Level-triggered epoll_wait reports a socket on every call while unread bytes remain, so a loop that " +
			"leaves them unread spins, and it stops once a read has met EAGAIN.",
	},
	{
		ID: "epoll.edge", Chapter: Epoll, Verdict: True,
		Source: "epoll(7)",
		SourceQuote: "The reason for this is that edge-triggered mode delivers events only when changes occur on " +
			"the monitored file descriptor.",
		Why: "With EPOLLET epoll_wait reports a socket once per arrival: a reader that leaves bytes unread " +
			"(FIONREAD above 0) is not told again until more arrive, which is why edge-triggered readers read until EAGAIN.",
	},
	{
		ID: "epoll.scale", Chapter: Epoll, Verdict: True,
		Question: "How does one thread serve 10,000 connections?",
		Source:   "epoll(7)",
		SourceQuote: "The epoll API can be used either as an edge-triggered or a level-triggered interface and " +
			"scales well to large numbers of watched file descriptors.",
		Why: "The kernel keeps an epoll instance's ready list as data arrives, so one epoll_wait over 10,000 idle " +
			"connections returns just the one that is ready, while poll(2) is handed all 10,000 and writes back " +
			"a revents for each, its time per call growing with their number.",
	},
	{
		ID: "epoll.exclusive", Chapter: Epoll, Verdict: Qualified,
		Question: "Do all my threads wake for one connection?",
		Source:   "epoll_ctl(2)",
		SourceQuote: "When a wakeup event occurs and multiple epoll file descriptors are attached to the same " +
			"target file using EPOLLEXCLUSIVE, one or more of the epoll file descriptors will receive an event " +
			"with epoll_wait(2). The default in this scenario (when EPOLLEXCLUSIVE is not set) is for all epoll " +
			"file descriptors to receive an event.",
		Why: "Without EPOLLEXCLUSIVE a connection wakes every thread waiting on the listener, though one accepts it " +
			"and the others sleep again without epoll_wait returning; with it the kernel stops at the first epoll " +
			"instance that has a thread asleep in epoll_wait.",
	},
}

// Lookup finds a registered claim by its id.
func Lookup(id string) (Claim, bool) {
	for _, c := range Claims {
		if c.ID == id {
			return c, true
		}
	}
	return Claim{}, false
}
