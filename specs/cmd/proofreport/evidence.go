package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"portproof/specs/evidence"
)

// The evidence a spec attached is JSON of any shape. The names specs/evidence documents for
// every chapter get a rendering of their own; any other name is rendered by its shape, so that
// a chapter's new kind of evidence shows up readably without a change here.

// object is a JSON object that keeps its keys in the order the spec wrote them, which is
// the order a reader should see them in.
type object struct {
	keys []string
	vals map[string]any
}

func (o *object) get(k string) any { return o.vals[k] }

// decodeOrdered decodes JSON into nil, bool, json.Number, string, []any and *object.
func decodeOrdered(data string) (any, error) {
	d := json.NewDecoder(strings.NewReader(data))
	d.UseNumber()
	v, err := decodeValue(d)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

func decodeValue(d *json.Decoder) (any, error) {
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t {
	case json.Delim('{'):
		o := &object{vals: map[string]any{}}
		for d.More() {
			kt, err := d.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string)
			v, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			if _, dup := o.vals[k]; !dup {
				o.keys = append(o.keys, k)
			}
			o.vals[k] = v
		}
		_, err := d.Token() // '}'
		return o, err
	case json.Delim('['):
		a := []any{}
		for d.More() {
			v, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := d.Token() // ']'
		return a, err
	}
	return t, nil
}

func isScalar(v any) bool {
	switch v.(type) {
	case []any, *object:
		return false
	}
	return true
}

// text is a scalar as a reader reads it.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return "none"
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// code is s as inline code in a Markdown table cell: the pipe would end the cell.
func code(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(s, "|", "\\|")
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

// Limits that keep a page readable when a proof opened a thousand connections: the report
// keeps everything.
const (
	maxRows  = 20
	maxItems = 16
)

// scalarList is a list of scalars, the first maxItems of them.
func scalarList(a []any) string {
	var parts []string
	for i, v := range a {
		if i == maxItems {
			parts = append(parts, fmt.Sprintf("… (%d in all)", len(a)))
			break
		}
		parts = append(parts, text(v))
	}
	return strings.Join(parts, ", ")
}

// Titles for the names every chapter uses, and for three that their name alone would not
// explain; any other name is titled from itself.
var entryTitles = map[string]string{
	evidence.EntryTuples:          "Connections, as each end's getsockname → getpeername reads them",
	evidence.EntryErrno:           "A call the kernel refused",
	evidence.EntryPorts:           "Ports, by role",
	evidence.EntryPortRange:       "The ephemeral port range",
	evidence.EntryPortPattern:     "How the kernel walked the range (shown, not asserted)",
	evidence.EntryTraffic:         "What each socket received",
	evidence.EntryPackets:         "Segments captured on lo",
	evidence.EntryAcceptQueue:     "The listener's accept queue (TCP_INFO)",
	evidence.EntryBacklogCounters: "TCP counters (/proc/net/netstat)",
}

func entryTitle(name string) string {
	if t, ok := entryTitles[name]; ok {
		return t
	}
	return strings.ToUpper(name[:1]) + strings.ReplaceAll(name[1:], "_", " ")
}

// renderEntry writes one report entry as Markdown.
func renderEntry(w *bytes.Buffer, e reportEntry) {
	fmt.Fprintf(w, "**%s** <small>(`%s`)</small>\n\n", entryTitle(e.Name), e.Name)
	v, err := decodeOrdered(e.Value.AsJSON)
	if err != nil {
		fmt.Fprintf(w, "```text\n%s\n```\n\n", e.Value.AsJSON)
		return
	}
	switch e.Name {
	case evidence.EntryErrno:
		if o, ok := v.(*object); ok && o.get("errno") != nil {
			line := fmt.Sprintf("`%s` failed with **%s**", text(o.get("call")), text(o.get("errno")))
			if l := o.get("local"); l != nil {
				line += fmt.Sprintf(", on a socket bound to `%s`", text(l))
			}
			if r := o.get("remote"); r != nil {
				line += fmt.Sprintf(", toward `%s`", text(r))
			}
			if m := o.get("error"); m != nil {
				line += fmt.Sprintf(": Go says `%s`", text(m))
			}
			fmt.Fprintf(w, "%s.\n\n", line)
			return
		}
	case "port_range":
		if o, ok := v.(*object); ok && o.get("low") != nil {
			fmt.Fprintf(w, "`%s` = %s to %s: **%s ports**.\n\n", text(o.get("sysctl")), text(o.get("low")), text(o.get("high")), text(o.get("size")))
			return
		}
	}
	renderValue(w, v)
}

// renderValue writes any JSON value by its shape.
func renderValue(w *bytes.Buffer, v any) {
	switch v := v.(type) {
	case []any:
		if len(v) == 0 {
			fmt.Fprint(w, "(none)\n\n")
			return
		}
		if rows, ok := flatObjects(v); ok {
			renderTable(w, rows)
			return
		}
		if allScalars(v) {
			fmt.Fprintf(w, "%s\n\n", code(scalarList(v)))
			return
		}
	case *object:
		if o := v; mapOfScalarLists(o) {
			fmt.Fprint(w, "| | how many | values |\n|---|---|---|\n")
			for _, k := range o.keys {
				a, _ := o.get(k).([]any)
				if !isScalar(o.get(k)) && a == nil {
					continue
				}
				if a == nil {
					fmt.Fprintf(w, "| %s | 1 | %s |\n", k, code(text(o.get(k))))
					continue
				}
				fmt.Fprintf(w, "| %s | %d | %s |\n", k, len(a), code(scalarList(a)))
			}
			fmt.Fprintln(w)
			return
		}
		if flat(v) {
			fmt.Fprint(w, "| | |\n|---|---|\n")
			for _, k := range v.keys {
				fmt.Fprintf(w, "| %s | %s |\n", k, code(text(v.get(k))))
			}
			fmt.Fprintln(w)
			return
		}
		// A nested object: each field in turn, as its own small block.
		for _, k := range v.keys {
			fmt.Fprintf(w, "*%s*: ", k)
			if isScalar(v.get(k)) {
				fmt.Fprintf(w, "%s\n\n", code(text(v.get(k))))
				continue
			}
			fmt.Fprint(w, "\n\n")
			renderValue(w, v.get(k))
		}
		return
	default:
		fmt.Fprintf(w, "%s\n\n", code(text(v)))
		return
	}
	b, _ := json.MarshalIndent(plain(v), "", "  ")
	fmt.Fprintf(w, "```json\n%s\n```\n\n", b)
}

func flat(o *object) bool {
	for _, k := range o.keys {
		if !isScalar(o.get(k)) {
			return false
		}
	}
	return true
}

func allScalars(a []any) bool {
	for _, v := range a {
		if !isScalar(v) {
			return false
		}
	}
	return true
}

// mapOfScalarLists is true for {"role": [1, 2], ...}, as "ports" is.
func mapOfScalarLists(o *object) bool {
	lists := 0
	for _, k := range o.keys {
		switch v := o.get(k).(type) {
		case []any:
			if !allScalars(v) {
				return false
			}
			lists++
		case *object:
			return false
		}
	}
	return lists > 0
}

// flatObjects is a list of objects whose fields are all scalars: a table.
func flatObjects(a []any) ([]*object, bool) {
	rows := make([]*object, 0, len(a))
	for _, v := range a {
		o, ok := v.(*object)
		if !ok {
			return nil, false
		}
		for _, k := range o.keys {
			switch o.get(k).(type) {
			case *object:
				return nil, false
			case []any:
				if !allScalars(o.get(k).([]any)) {
					return nil, false
				}
			}
		}
		rows = append(rows, o)
	}
	return rows, true
}

// renderTable writes rows of flat objects as a table, columns in first-seen order. A "time"
// column (packets) is shown relative to the first row's, which is what a timeline needs.
func renderTable(w *bytes.Buffer, rows []*object) {
	var cols []string
	for _, r := range rows {
		for _, k := range r.keys {
			if !slices.Contains(cols, k) {
				cols = append(cols, k)
			}
		}
	}
	var t0 time.Time
	if s, ok := rows[0].get("time").(string); ok {
		t0, _ = time.Parse(time.RFC3339Nano, s)
	}
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = c
		if c == "time" && !t0.IsZero() {
			head[i] = "time (µs after the first)"
		}
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(head, " | "), strings.Repeat("---|", len(cols)))
	for i, r := range rows {
		if i == maxRows {
			fmt.Fprintf(w, "\n…and %d more rows, all in the JSON report.\n", len(rows)-maxRows)
			break
		}
		cells := make([]string, len(cols))
		for j, c := range cols {
			v, ok := r.vals[c]
			switch {
			case !ok:
			case c == "time" && !t0.IsZero():
				if s, ok := v.(string); ok {
					if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
						cells[j] = fmt.Sprintf("%.0f", float64(t.Sub(t0).Nanoseconds())/1e3)
						continue
					}
				}
				cells[j] = code(text(v))
			default:
				if a, ok := v.([]any); ok {
					cells[j] = code(scalarList(a))
				} else {
					cells[j] = code(text(v))
				}
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
}

// plain turns decoded values back into what encoding/json writes (for a code block).
func plain(v any) any {
	switch v := v.(type) {
	case *object:
		m := make(map[string]any, len(v.keys))
		for k, x := range v.vals {
			m[k] = plain(x)
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = plain(x)
		}
		return out
	}
	return v
}
