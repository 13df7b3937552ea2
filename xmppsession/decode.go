package xmppsession

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"hookctl.dev/hookctl"
	"mellium.im/xmpp/jid"
)

// Namespaces of XEP-0060.
const (
	NSPubSub      = "http://jabber.org/protocol/pubsub"
	NSPubSubEvent = "http://jabber.org/protocol/pubsub#event"
	NSPubSubOwner = "http://jabber.org/protocol/pubsub#owner"
)

// nsXML is the namespace bound to the reserved "xml" prefix.
const nsXML = "http://www.w3.org/XML/1998/namespace"

// MaxPayload is the largest item payload (as re-encoded XML text) that
// DecodeEvent and Items accept; larger items are skipped and reported.
const MaxPayload = 1 << 20

// ErrTooLarge reports an item skipped because its payload exceeds
// MaxPayload.
var ErrTooLarge = errors.New("payload too large")

// SkippedItem reports an item of a notification that was not turned into
// an event: its payload is over MaxPayload (Err wraps ErrTooLarge) or not
// decodable, e.g. nested too deep (Err wraps hookctl.ErrInvalid).
type SkippedItem struct {
	Service, Node, ItemID string
	Err                   error
}

func (e *SkippedItem) Error() string {
	return fmt.Sprintf("item %q of node %q skipped: %v", e.ItemID, e.Node, e.Err)
}

func (e *SkippedItem) Unwrap() error { return e.Err }

// SkippedItems lists the SkippedItem reports in an error of DecodeEvent.
func SkippedItems(err error) []*SkippedItem {
	var out []*SkippedItem
	var walk func(error)
	walk = func(err error) {
		var si *SkippedItem
		switch e := err.(type) {
		case nil:
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		default:
			if errors.As(err, &si) {
				out = append(out, si)
			}
		}
	}
	walk(err)
	return out
}

// DecodeEvent decodes one <message> (the whole element, start to end) into
// PubSub events: one per <item> and <retract> in document order, one per
// <delete> and <purge>. Messages without a PubSub event give no events and
// no error.
//
// Service is the bare JID of the message's from attribute; from is used
// when the message has none (the stream layer strips from on stanzas sent
// by the account itself, e.g. its own PEP notifications).
//
// Items whose payload exceeds MaxPayload are skipped; the events of the
// other items are returned together with an error wrapping ErrTooLarge.
// Malformed input gives an error wrapping hookctl.ErrInvalid, along with the
// events completely decoded before the fault.
func DecodeEvent(profile, from string, r xml.TokenReader) ([]hookctl.Event, error) {
	d := &tokens{r: r}
	start, err := d.firstStart()
	if err != nil {
		return nil, fmt.Errorf("%w: decoding message: %v", hookctl.ErrInvalid, err)
	}
	if start.Name.Local != "message" {
		d.skip()
		return nil, fmt.Errorf("%w: decoding message: got <%s>", hookctl.ErrInvalid, start.Name.Local)
	}
	if v := attrValue(start.Attr, "from"); v != "" {
		from = v
	}
	dec := eventDecoder{base: hookctl.Event{
		Profile:  profile,
		Service:  bareJID(from),
		Received: time.Now(),
	}}
	for {
		tok, err := d.next()
		if err != nil {
			return dec.events, dec.fail(fmt.Errorf("%w: decoding message: %v", hookctl.ErrInvalid, err))
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space == NSPubSubEvent && t.Name.Local == "event" {
				if err := dec.event(d); err != nil {
					return dec.events, dec.fail(err)
				}
			} else if err := d.skip(); err != nil {
				return dec.events, dec.fail(fmt.Errorf("%w: decoding message: %v", hookctl.ErrInvalid, err))
			}
		case xml.EndElement:
			return dec.events, dec.fail(nil)
		}
	}
}

// eventDecoder accumulates the events of one message.
type eventDecoder struct {
	base    hookctl.Event
	events  []hookctl.Event
	skipped []error
}

// fail joins err with the reports of skipped items.
func (e *eventDecoder) fail(err error) error {
	return errors.Join(append(e.skipped, err)...)
}

func (e *eventDecoder) add(kind hookctl.EventKind, node string) *hookctl.Event {
	ev := e.base
	ev.Kind, ev.Node = kind, node
	e.events = append(e.events, ev)
	return &e.events[len(e.events)-1]
}

// event decodes the children of <event>, whose start was just read.
func (e *eventDecoder) event(d *tokens) error {
	invalid := func(err error) error {
		return fmt.Errorf("%w: decoding event: %v", hookctl.ErrInvalid, err)
	}
	for {
		tok, err := d.next()
		if err != nil {
			return invalid(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			node := attrValue(t.Attr, "node")
			switch {
			case t.Name.Space != NSPubSubEvent:
				err = d.skip()
			case t.Name.Local == "configuration",
				t.Name.Local == "subscription" && attrValue(t.Attr, "subscription") != "subscribed":
				kind := hookctl.EventConfiguration
				if t.Name.Local == "subscription" {
					kind = hookctl.EventSubscription
				}
				e.add(kind, node)
				err = d.skip()
			case t.Name.Local == "items":
				err = e.items(d, node)
			case t.Name.Local == "delete", t.Name.Local == "purge":
				err = e.nodeEvent(d, t, node)
			default: // collection, subscription approved: nothing to do
				err = d.skip()
			}
			if err != nil {
				return err
			}
		}
	}
}

// nodeEvent decodes a <delete> or <purge> element, whose start was just
// read: its event carries the element itself (with its namespace and
// children, e.g. a delete's <redirect>) as ItemXML, as an item's does.
func (e *eventDecoder) nodeEvent(d *tokens, t xml.StartElement, node string) error {
	it, err := capture(d, t)
	if err != nil {
		return fmt.Errorf("%w: decoding %s of node %q: %v", hookctl.ErrInvalid, t.Name.Local, node, err)
	}
	kind := hookctl.EventDelete
	if t.Name.Local == "purge" {
		kind = hookctl.EventPurge
	}
	ev := e.add(kind, node)
	if it.invalid == nil && !it.tooLarge {
		ev.ItemXML = it.XML
	}
	return nil
}

// items decodes the children of <items node='node'>.
func (e *eventDecoder) items(d *tokens, node string) error {
	for {
		tok, err := d.next()
		if err != nil {
			return fmt.Errorf("%w: decoding items of node %q: %v", hookctl.ErrInvalid, node, err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.StartElement:
			if t.Name.Space != NSPubSubEvent || (t.Name.Local != "item" && t.Name.Local != "retract") {
				if err := d.skip(); err != nil {
					return fmt.Errorf("%w: decoding items of node %q: %v", hookctl.ErrInvalid, node, err)
				}
				continue
			}
			it, err := capture(d, t)
			if err != nil {
				// The rest of the message cannot be read; this item is
				// reported as skipped, with its id.
				return &SkippedItem{Service: e.base.Service, Node: node, ItemID: it.ID,
					Err: fmt.Errorf("%w: decoding item: %v", hookctl.ErrInvalid, err)}
			}
			if it.tooLarge {
				e.skipped = append(e.skipped, &SkippedItem{Service: e.base.Service, Node: node, ItemID: it.ID,
					Err: fmt.Errorf("%w (over %d bytes)", ErrTooLarge, MaxPayload)})
				continue
			}
			if it.invalid != nil {
				e.skipped = append(e.skipped, &SkippedItem{Service: e.base.Service, Node: node, ItemID: it.ID,
					Err: fmt.Errorf("%w: decoding item: %v", hookctl.ErrInvalid, it.invalid)})
				continue
			}
			kind := hookctl.EventPublish
			if t.Name.Local == "retract" {
				kind = hookctl.EventRetract
			}
			ev := e.add(kind, node)
			ev.ItemID, ev.Publisher, ev.ItemXML = it.ID, it.Publisher, it.XML
			if kind == hookctl.EventPublish {
				ev.Payload = it.Payload
			}
		}
	}
}

// Item is a PubSub item as fetched from a node.
type Item struct {
	// ID is the item's id.
	ID string
	// Publisher is the publisher attribute, when the service sends one.
	Publisher string
	// Payload is the item's children as XML text, namespaces declared.
	Payload string
	// XML is the whole <item> element as XML text, in the pubsub#event
	// namespace as in notifications (fetched items come in the pubsub
	// namespace), so that hooks see one element either way.
	XML string

	tooLarge bool
	invalid  error // why the element cannot be re-encoded as well-formed XML
}

// capture reads the element whose start was just read, up to its end, and
// re-encodes it twice: whole (XML) and its children alone (Payload). Token
// decoders give no innerxml, hence the re-encoding.
func capture(d *tokens, start xml.StartElement) (Item, error) {
	it := Item{ID: attrValue(start.Attr, "id"), Publisher: attrValue(start.Attr, "publisher")}
	whole := newXMLWriter(MaxPayload + 64<<10)
	inner := newXMLWriter(MaxPayload)
	whole.start(start)
	depth := 0
	for {
		tok, err := d.next()
		if err != nil {
			return it, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			whole.start(t)
			inner.start(t)
		case xml.EndElement:
			whole.end()
			if depth == 0 {
				it.tooLarge = whole.over || inner.over
				it.invalid = whole.bad
				if !it.tooLarge && it.invalid == nil {
					it.XML, it.Payload = whole.String(), strings.TrimSpace(inner.String())
				}
				return it, nil
			}
			depth--
			inner.end()
		case xml.CharData:
			whole.text(t)
			inner.text(t)
		}
	}
}

// tokens reads tokens, tracking the element depth so that skip can find the
// end of the current element, and treating (token, io.EOF) pairs as the
// TokenReader contract allows.
type tokens struct {
	r       xml.TokenReader
	pending error
	depth   int
}

// maxDepth bounds nesting so that hostile input cannot grow the stack of
// the re-encoder without limit.
const maxDepth = 256

func (d *tokens) next() (xml.Token, error) {
	if d.pending != nil {
		return nil, d.pending
	}
	for {
		tok, err := d.r.Token()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if tok == nil {
				d.pending = err
				return nil, err
			}
			d.pending = err
		}
		if tok == nil {
			continue
		}
		switch t := tok.(type) {
		case xml.StartElement:
			d.depth++
			if d.depth > maxDepth {
				d.pending = fmt.Errorf("elements nested deeper than %d", maxDepth)
				return nil, d.pending
			}
		case xml.EndElement:
			d.depth--
			if d.depth < 0 {
				d.pending = fmt.Errorf("unexpected </%s>", t.Name.Local)
				return nil, d.pending
			}
		}
		return tok, nil
	}
}

// firstStart returns the first start element, skipping prolog tokens.
func (d *tokens) firstStart() (xml.StartElement, error) {
	for {
		tok, err := d.next()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, fmt.Errorf("unexpected </%s>", t.Name.Local)
		}
	}
}

// skip consumes the rest of the element whose start was just read.
func (d *tokens) skip() error {
	target := d.depth - 1
	for d.depth > target {
		if _, err := d.next(); err != nil {
			return err
		}
	}
	return nil
}

func attrValue(attrs []xml.Attr, local string) string {
	for _, a := range attrs {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// bareJID returns the bare form of s, normalised when s parses as a JID.
func bareJID(s string) string {
	if s == "" {
		return ""
	}
	if j, err := jid.Parse(s); err == nil {
		return j.Bare().String()
	}
	bare, _, _ := strings.Cut(s, "/")
	return bare
}

// xmlWriter re-encodes tokens as XML text with every namespace declared.
// encoding/xml's Encoder is not used: it repeats xmlns attributes that came
// from a decoder and cannot undeclare a default namespace (xmlns="").
type xmlWriter struct {
	buf     bytes.Buffer
	limit   int
	over    bool
	open    bool     // a start tag is written but not yet closed with '>'
	names   []string // local names of open elements
	spaces  []string // default namespace in effect inside each open element
	writing bool
	// bad says why the input cannot be written as well-formed XML: a name
	// that is not an XML name (encoding/xml's decoder accepts e.g. <a:0>),
	// or an attribute given twice. The first fault is kept.
	bad error
}

func newXMLWriter(limit int) *xmlWriter { return &xmlWriter{limit: limit, writing: true} }

func (w *xmlWriter) String() string { return w.buf.String() }

func (w *xmlWriter) check() {
	if w.buf.Len() > w.limit {
		w.over, w.writing = true, false
		w.buf.Reset()
	}
}

func (w *xmlWriter) closeTag() {
	if w.open {
		w.buf.WriteByte('>')
		w.open = false
	}
}

func (w *xmlWriter) start(t xml.StartElement) {
	parent := ""
	if n := len(w.spaces); n > 0 {
		parent = w.spaces[n-1]
	}
	w.names = append(w.names, t.Name.Local)
	w.spaces = append(w.spaces, t.Name.Space)
	if w.bad == nil {
		w.bad = checkNames(t)
	}
	if !w.writing {
		return
	}
	w.closeTag()
	w.buf.WriteByte('<')
	w.buf.WriteString(t.Name.Local)
	if t.Name.Space != parent {
		w.buf.WriteString(` xmlns="`)
		escape(&w.buf, t.Name.Space, true)
		w.buf.WriteByte('"')
	}
	var prefixes map[string]string
	for _, a := range t.Attr {
		switch {
		case a.Name.Local == "":
			continue
		case a.Name.Space == "" && a.Name.Local == "xmlns", a.Name.Space == "xmlns":
			continue // declarations: rewritten as needed
		}
		w.buf.WriteByte(' ')
		switch a.Name.Space {
		case "":
		case nsXML, "xml":
			w.buf.WriteString("xml:")
		default:
			p, ok := prefixes[a.Name.Space]
			if !ok {
				if prefixes == nil {
					prefixes = map[string]string{}
				}
				p = "ns" + strconv.Itoa(len(prefixes))
				prefixes[a.Name.Space] = p
				w.buf.WriteString("xmlns:" + p + `="`)
				escape(&w.buf, a.Name.Space, true)
				w.buf.WriteString(`" `)
			}
			w.buf.WriteString(p + ":")
		}
		w.buf.WriteString(a.Name.Local)
		w.buf.WriteString(`="`)
		escape(&w.buf, a.Value, true)
		w.buf.WriteByte('"')
	}
	w.open = true
	w.check()
}

func (w *xmlWriter) end() {
	n := len(w.names)
	if n == 0 {
		return
	}
	name := w.names[n-1]
	w.names, w.spaces = w.names[:n-1], w.spaces[:n-1]
	if !w.writing {
		return
	}
	if w.open {
		w.buf.WriteString("/>")
		w.open = false
	} else {
		w.buf.WriteString("</" + name + ">")
	}
	w.check()
}

func (w *xmlWriter) text(t xml.CharData) {
	if !w.writing {
		return
	}
	w.closeTag()
	escape(&w.buf, string(t), false)
	w.check()
}

// checkNames reports a start element that cannot be written back as
// namespace-well-formed XML: a local name (element or attribute) that is not
// an NCName, or an attribute present twice once prefixes are resolved.
func checkNames(t xml.StartElement) error {
	if !isNCName(t.Name.Local) {
		return fmt.Errorf("element name %q is not an XML name", t.Name.Local)
	}
	for i, a := range t.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		if !isNCName(a.Name.Local) {
			return fmt.Errorf("attribute name %q of <%s> is not an XML name", a.Name.Local, t.Name.Local)
		}
		for _, b := range t.Attr[:i] {
			if b.Name == a.Name {
				return fmt.Errorf("attribute %q of <%s> given twice", a.Name.Local, t.Name.Local)
			}
		}
	}
	return nil
}

// isNCName reports whether s is a name without colon (Namespaces in XML
// 1.0, NCName; character classes of XML 1.0 fifth edition).
func isNCName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !isNameStart(r) && (i == 0 || !isNameChar(r)) {
			return false
		}
	}
	return true
}

func isNameStart(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		return true
	case r < 0xC0:
		return false
	}
	return r <= 0xD6 || (r >= 0xD8 && r <= 0xF6) || (r >= 0xF8 && r <= 0x2FF) ||
		(r >= 0x370 && r <= 0x37D) || (r >= 0x37F && r <= 0x1FFF) || (r >= 0x200C && r <= 0x200D) ||
		(r >= 0x2070 && r <= 0x218F) || (r >= 0x2C00 && r <= 0x2FEF) || (r >= 0x3001 && r <= 0xD7FF) ||
		(r >= 0xF900 && r <= 0xFDCF) || (r >= 0xFDF0 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0xEFFFF)
}

func isNameChar(r rune) bool {
	return isNameStart(r) || r == '-' || r == '.' || (r >= '0' && r <= '9') || r == 0xB7 ||
		(r >= 0x300 && r <= 0x36F) || (r >= 0x203F && r <= 0x2040)
}

// escape writes s with the XML special characters escaped; in attributes
// also quotes and whitespace that attribute normalisation would eat.
func escape(b *bytes.Buffer, s string, attr bool) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\r':
			esc = "&#xD;"
		case '"':
			if attr {
				esc = "&quot;"
			}
		case '\n':
			if attr {
				esc = "&#xA;"
			}
		case '\t':
			if attr {
				esc = "&#x9;"
			}
		}
		if esc == "" {
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(esc)
		last = i + 1
	}
	b.WriteString(s[last:])
}
