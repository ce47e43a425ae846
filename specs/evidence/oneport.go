package evidence

// Chapter 2, one port or two: the server's side of port.same, and port.ephemeral's parity
// sandboxes. Beside "tuples", "ports", "port_range" and "port_pattern", its entries are:
//
//	"server_sockets" ServerSockets  the listener and every socket accept4(2) returned
//	"port_parity"    PortParity     one narrowed range, filled by bind(ip:0) then connect()

const (
	// EntryServerSockets is a ServerSockets: port.same's listener and every socket accept4(2)
	// returned, by descriptor, each with its state.
	EntryServerSockets = "server_sockets"
	// EntryPortParity is a PortParity: one parity sandbox's range and the ports in the order
	// the kernel gave them; one entry per range.
	EntryPortParity = "port_parity"
)

// ServerSockets is the server's side of port.same: one passive socket, and the active ones
// it handed out, all on its address and port.
type ServerSockets struct {
	Listener ListeningSocket  `json:"listener"` // read after the last accept
	Accepted []AcceptedSocket `json:"accepted"` // in the order accept4 returned them
}

// ListeningSocket is the listening socket.
type ListeningSocket struct {
	FD    int    `json:"fd"`    // the descriptor socket(2) returned
	Addr  string `json:"addr"`  // getsockname(2)
	State string `json:"state"` // from TCP_INFO (tcpi_state): LISTEN
}

// AcceptedSocket is an accepted socket; its two ends are in the "tuples" entry, under its
// name.
type AcceptedSocket struct {
	Conn  string `json:"conn"`  // the connection's name in the "tuples" entry
	FD    int    `json:"fd"`    // the descriptor accept4(2) returned
	State string `json:"state"` // from TCP_INFO (tcpi_state): ESTABLISHED
}

// PortParity is one narrowed net.ipv4.ip_local_port_range filled twice in a sandbox, where no
// other socket holds a port: the order of the ports shows which parity each call takes first.
type PortParity struct {
	Range   string   `json:"range"`   // as the child's kernel read it back
	Low     string   `json:"low_end"` // the parity of its low end
	Connect []uint16 `json:"connect"` // connect()'s ports, in order
	Bind    []uint16 `json:"bind"`    // bind(ip:0)'s ports, in order
}
