package evidence

// One socket, two families (chapter 9): refserver on [::], with IPV6_V6ONLY as
// net.ipv6.bindv6only leaves it or as Config.V6Only sets it, its clients of either family,
// and refserver on 0.0.0.0 and the same port beside it. Each run is in a sandbox whose only
// interface is its own lo, so that a wildcard bind takes nothing of the host's. The docs draw
// the chapter's picture from its one entry, recorded once per proof:
//
//	"dualstack"  DualStack  the [::] listener, its clients, and the 0.0.0.0 one or its errno

const (
	EntryDualStack = "dualstack" // a DualStack
)

// DualStack is what the child saw: refserver on [::]:P, three clients, and a second
// refserver on 0.0.0.0:P.
type DualStack struct {
	// BindV6Only is net.ipv6.bindv6only in the sandbox: the default IPV6_V6ONLY of every
	// AF_INET6 socket there.
	BindV6Only string            `json:"bindv6only"`
	Wildcard6  DualStackListener `json:"wildcard6"` // refserver on [::]:0
	// Clients, in order: IPv4 to 127.0.0.1:P, IPv6 to [::1]:P, both while only the [::]
	// listener exists; then, if the second refserver started, IPv4 to 127.0.0.1:P again.
	Clients []DualStackClient `json:"clients"`
	// Wildcard4 is refserver on 0.0.0.0:P beside the first: its error when New failed.
	Wildcard4 DualStackListener `json:"wildcard4"`
}

// DualStackListener is one refserver's listener as the kernel reads it back.
type DualStackListener struct {
	Asked  string `json:"asked"`            // Config.Addr
	Addr   string `json:"addr,omitempty"`   // Server.Addr(): getsockname
	Domain string `json:"domain,omitempty"` // SO_DOMAIN of the listener
	V6Only *int   `json:"v6only,omitempty"` // getsockopt IPV6_V6ONLY, on an AF_INET6 listener
	// Narration is refserver's log of New: each system call and the kernel's answer.
	Narration []string `json:"narration"`
	Errno     string   `json:"errno,omitempty"` // New's error, as an errno name
	Accepted  uint64   `json:"accepted"`        // Stats().Accepted once the clients were served
}

// DualStackClient is one client: its own end, and the line refserver greeted it with.
type DualStackClient struct {
	To     string `json:"to"`              // the address it connected to
	Domain string `json:"domain"`          // the client's socket(2) domain
	Tuple  string `json:"tuple,omitempty"` // sock.TupleOf on the client
	Errno  string `json:"errno,omitempty"` // connect's refusal
	// Greeting is the TupleHandler's first line: the connection as the server's end reads
	// it (getpeername, getsockname), spelled from the client's side.
	Greeting string `json:"greeting,omitempty"`
	// SeenAs and Server are the greeting's addresses: the client as the server saw it, and
	// the server's own end.
	SeenAs string `json:"seen_as,omitempty"`
	Server string `json:"server,omitempty"`
}
