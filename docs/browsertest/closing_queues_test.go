package browsertest

// Part II, chapters 7 and 8: the pictures specs/cmd/proofreport draws for them
// (pictures_closing.go, pictures_queues.go), each in its chapter and under its claim on the
// proof page. A file of their own, so that each chapter's lines join the map without
// touching another's.
func init() {
	pictures["/ch7-closing/"] = []string{"close-timeline.svg"}
	pictures["/ch8-queues/"] = []string{"handshake-views.svg"}
	pictures["/proofs/"] = append(pictures["/proofs/"], "close-timeline.svg", "handshake-views.svg")
}
