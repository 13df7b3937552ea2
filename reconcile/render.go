package reconcile

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"hookctl.dev/hookctl"
)

// FormatVersion is the version of the JSON plan document. It changes only
// when a field changes meaning or goes away; new fields may be added.
const FormatVersion = 1

// Document is the machine-readable form of a plan (`diff -o json`,
// `apply -o json`).
type Document struct {
	FormatVersion int             `json:"format_version"`
	Revision      uint64          `json:"revision"`
	Sets          []string        `json:"sets"`
	InSync        bool            `json:"in_sync"`
	Summary       Counts          `json:"summary"`
	Changes       []DocumentEntry `json:"changes"`
	// Refused lists the sets whose changes apply refuses (guards, another
	// source's set), with why; their changes are still listed.
	Refused []SetPlan `json:"refused,omitempty"`
	// Applied and NewRevision are set by apply only.
	Applied     *bool   `json:"applied,omitempty"`
	NewRevision *uint64 `json:"new_revision,omitempty"`
}

// DocumentEntry is one entry of a Document. Unchanged hooks are omitted.
type DocumentEntry struct {
	Action  Action           `json:"action"`
	Key     hookctl.Key      `json:"key"`
	Name    string           `json:"name,omitempty"`
	Owner   string           `json:"owner,omitempty"`
	Source  string           `json:"source,omitempty"`
	Changes []hookctl.Change `json:"changes,omitempty"`
	Reason  string           `json:"reason,omitempty"`
}

// Document returns the plan's machine-readable form.
func (p Changeset) Document() Document {
	sets := p.Sets
	if sets == nil {
		sets = []string{}
	}
	d := Document{
		FormatVersion: FormatVersion,
		Revision:      p.Revision,
		Sets:          sets,
		InSync:        p.InSync(),
		Summary:       p.Counts(),
		Changes:       []DocumentEntry{},
	}
	for _, e := range p.Entries {
		if e.Action == ActionUnchanged {
			continue
		}
		de := DocumentEntry{Action: e.Action, Key: e.Key, Source: e.Source(), Changes: e.Changes, Reason: e.Reason}
		h := e.Desired
		if h == nil {
			h = e.Live
		}
		de.Name = h.Name
		if e.Live != nil {
			de.Owner = e.Live.Owner
		}
		d.Changes = append(d.Changes, de)
	}
	for _, sp := range p.SetPlans {
		if sp.Err != nil {
			d.Refused = append(d.Refused, sp)
		}
	}
	return d
}

// TextOptions control the human rendering.
type TextOptions struct {
	// Color adds ANSI colours (green create, yellow update, red delete).
	Color bool
	// LeftAlone also lists the hooks left alone that concern the plan's
	// sets: made by hand (candidates for --adopt or --prune-unowned) and
	// the sets' own hooks kept by NoPrune. Other sets' hooks are only
	// counted, so that the output does not grow with the registry.
	LeftAlone bool
	// Verbose lists every attribute of a hook to create, defaults too;
	// otherwise only those set apart from the defaults.
	Verbose bool
}

const (
	ansiReset  = "\x1b[0m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiDim    = "\x1b[2m"
)

// WriteText renders the plan for people: one line per change (`+` create,
// `~` update with its attribute changes indented below, `-` delete, `!`
// conflict, `=` left alone when asked), a "Refused:" line per refused
// set, then the summary line.
func (p Changeset) WriteText(w io.Writer, o TextOptions) error {
	var b strings.Builder
	paint := func(color, s string) string {
		if !o.Color {
			return s
		}
		return color + s + ansiReset
	}
	for _, e := range p.Entries {
		var sign, color, where string
		switch e.Action {
		case ActionCreate:
			sign, color, where = "+", ansiGreen, e.Source()
		case ActionUpdate:
			sign, color, where = "~", ansiYellow, e.Source()
		case ActionDelete:
			sign, color = "-", ansiRed
			where = ownerLabel(e.Live.Owner)
			if e.Reason != "" {
				where += ", " + e.Reason
			}
		case ActionConflict:
			sign, color = "!", ansiRed
			where = e.Source() + ", conflict: " + e.Reason
		case ActionLeftAlone:
			if !o.LeftAlone || otherSet(p.Sets, e.Live.Owner) {
				continue
			}
			sign, color, where = "=", ansiDim, e.Reason
		default:
			continue
		}
		line := sign + " " + keyText(e.Key)
		if where != "" {
			line += "  (" + where + ")"
		}
		b.WriteString(paint(color, line))
		b.WriteByte('\n')
		for _, c := range e.Changes {
			fmt.Fprintf(&b, "    %s: %s → %s\n", c.Field, valueText(c.Old), valueText(c.New))
		}
		if e.Action == ActionCreate {
			writeAttributes(&b, *e.Desired, o.Verbose)
		}
	}
	for _, sp := range p.SetPlans {
		if sp.Err != nil {
			b.WriteString(paint(ansiRed, "Refused: "+sp.Refused))
			b.WriteByte('\n')
		}
	}
	b.WriteString(p.Summary())
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// writeAttributes lists, below a `+` line, the name and the attributes of
// the hook to create that are not the defaults (all with verbose), so a
// reviewer sees what the hook will do.
func writeAttributes(b *strings.Builder, h hookctl.Hook, verbose bool) {
	defaults := hookctl.Hook{Key: h.Key, Owner: h.Owner, Persistent: true}.Fields()
	for i, f := range h.Fields() {
		switch f.Name {
		case "profile", "service", "node", "type", "arg", "owner":
			continue // on the line above, or the set's
		}
		if verbose || f.Value != defaults[i].Value {
			fmt.Fprintf(b, "    %s: %s\n", f.Name, valueText(f.Value))
		}
	}
}

// keyText is the key as in `hook list`: profile service node type arg,
// the arg quoted only when it needs it.
func keyText(k hookctl.Key) string {
	arg := k.Arg
	if arg == "" || strings.ContainsAny(arg, " \t\n\"'") {
		arg = fmt.Sprintf("%q", arg)
	}
	svc := k.Service
	if svc == "" {
		svc = "(pep)"
	}
	return strings.Join([]string{k.Profile, svc, k.Node, string(k.Type), arg}, " ")
}

func valueText(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// otherSet reports whether owner is a set other than sets (not made by
// hand).
func otherSet(sets []string, owner string) bool {
	return owner != "" && !slices.Contains(sets, owner)
}

func ownerLabel(o string) string {
	if o == "" {
		return "made by hand"
	}
	return "owned by set " + o
}
