package xmppsession

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"hookctl.dev/hookctl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/pubsub"
	"mellium.im/xmpp/stanza"
)

// iq returns the request IQ for service; "" is the account's own PEP, which
// is addressed by sending no to attribute.
func iqTo(service string, typ stanza.IQType) (stanza.IQ, error) {
	iq := stanza.IQ{Type: typ}
	if service == "" {
		return iq, nil
	}
	j, err := jid.Parse(service)
	if err != nil {
		return iq, fmt.Errorf("%w: service %q: %v", hookctl.ErrInvalid, service, err)
	}
	iq.To = j
	return iq, nil
}

// elem builds <name attrs…>inner</name> as a fresh single-use reader.
func elem(space, local string, inner xml.TokenReader, attrs ...string) xml.TokenReader {
	start := xml.StartElement{Name: xml.Name{Space: space, Local: local}}
	for i := 0; i+1 < len(attrs); i += 2 {
		if attrs[i+1] != "" {
			start.Attr = append(start.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
		}
	}
	return xmlstream.Wrap(inner, start)
}

func describe(op, service, node string) string {
	if service == "" {
		service = "own PEP"
	}
	return fmt.Sprintf("%s %s node %q", op, service, node)
}

// request sends an IQ and decodes the result payload into v (nil: ignore).
func (s *Session) request(ctx context.Context, what, service string, typ stanza.IQType, payload func() xml.TokenReader, v any) error {
	iq, err := iqTo(service, typ)
	if err != nil {
		return err
	}
	c, rctx, done, err := s.current(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	err = c.xs.UnmarshalIQElement(rctx, payload(), iq, v)
	return s.reqErr(rctx, c, what, err)
}

type subscriptionsResult struct {
	XMLName       xml.Name `xml:"http://jabber.org/protocol/pubsub pubsub"`
	Subscriptions struct {
		Subscription []struct {
			Node  string `xml:"node,attr"`
			JID   string `xml:"jid,attr"`
			State string `xml:"subscription,attr"`
		} `xml:"subscription"`
	} `xml:"subscriptions"`
}

// Subscribe makes sure the session's full JID is subscribed to node on
// service ("" = own PEP). A full-JID subscription delivers without
// presence. created is false when the subscription existed already. Server
// refusals are *StanzaError (e.g. "item-not-found", "forbidden").
func (s *Session) Subscribe(ctx context.Context, service, node string) (created bool, err error) {
	what := describe("subscribing to", service, node)
	full, err := s.fullJID()
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	var subs subscriptionsResult
	err = s.request(ctx, what, service, stanza.GetIQ, func() xml.TokenReader {
		return elem(NSPubSub, "pubsub", elem("", "subscriptions", nil, "node", node))
	}, &subs)
	// A failed listing is not final: the subscribe below reports the real
	// problem (e.g. item-not-found) or succeeds. A listed subscription is
	// only a hint (it was there before us: created false): Prosody 0.12
	// still lists it for a node deleted and re-created, which has no
	// subscribers, so the subscribe is always sent (it is idempotent).
	listed := false
	if err == nil {
		for _, sub := range subs.Subscriptions.Subscription {
			if sub.JID == full && (sub.Node == node || sub.Node == "") && sub.State == "subscribed" {
				listed = true
			}
		}
	}
	return s.SubscribeListed(ctx, service, node, listed)
}

// SubscribeListed is Subscribe for a caller that has listed the service's
// subscriptions already (SubscribedNodes of every node, one request for
// many nodes): listed says whether node was in that list. It sends only
// the subscribe; created is !listed.
func (s *Session) SubscribeListed(ctx context.Context, service, node string, listed bool) (created bool, err error) {
	what := describe("subscribing to", service, node)
	full, err := s.fullJID()
	if err != nil {
		return false, fmt.Errorf("%s: %w", what, err)
	}
	err = s.request(ctx, what, service, stanza.SetIQ, func() xml.TokenReader {
		return elem(NSPubSub, "pubsub", elem("", "subscribe", nil, "node", node, "jid", full))
	}, nil)
	if err != nil {
		return false, err
	}
	return !listed, nil
}

// Unsubscribe removes the session's full-JID subscription to node.
func (s *Session) Unsubscribe(ctx context.Context, service, node string) error {
	what := describe("unsubscribing from", service, node)
	full, err := s.fullJID()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.request(ctx, what, service, stanza.SetIQ, func() xml.TokenReader {
		return elem(NSPubSub, "pubsub", elem("", "unsubscribe", nil, "node", node, "jid", full))
	}, nil)
}

// fullJID is the bound JID of the live connection.
func (s *Session) fullJID() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return "", fmt.Errorf("profile %q: not connected: %w", s.cfg.Profile, hookctl.ErrUnavailable)
	}
	return s.conn.full.String(), nil
}

type publishResult struct {
	XMLName xml.Name `xml:"http://jabber.org/protocol/pubsub pubsub"`
	Publish struct {
		Item struct {
			ID string `xml:"id,attr"`
		} `xml:"item"`
	} `xml:"publish"`
}

// Publish publishes an item with payloadXML (one element, or empty for no
// payload) to node on service ("" = own PEP, node autocreated). It returns
// the item id: itemID, or the one the server assigned when itemID is "".
func (s *Session) Publish(ctx context.Context, service, node, itemID, payloadXML string) (string, error) {
	what := describe("publishing to", service, node)
	payload, err := parsePayload(payloadXML)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	var res publishResult
	err = s.request(ctx, what, service, stanza.SetIQ, func() xml.TokenReader {
		return elem(NSPubSub, "pubsub",
			elem("", "publish", elem("", "item", xmlstream.MultiReader(tokenSlice(payload)), "id", itemID), "node", node))
	}, &res)
	if err != nil {
		return "", err
	}
	if res.Publish.Item.ID != "" {
		return res.Publish.Item.ID, nil
	}
	return itemID, nil
}

// parsePayload checks that text is at most one namespace-well-formed XML
// element and returns its tokens as written: names keep their prefixes
// and namespace declarations stay where they were, so that the item stored
// is the payload given, namespace for namespace. The tokens carry raw names
// (Space empty, Local "p:name"), which the encoder writes out unchanged.
//
// The payload is placed inside <pubsub xmlns=NSPubSub>: a root that
// declares no default namespace gets xmlns="", or it and its unprefixed
// descendants would land in the pubsub namespace.
//
// What encoding/xml's decoder lets through but a server would refuse (and
// then close the whole session) is refused here: names that are not XML
// names, undeclared prefixes, repeated attributes.
func parsePayload(text string) ([]xml.Token, error) {
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	if len(text) > MaxPayload {
		return nil, fmt.Errorf("%w: %w (over %d bytes)", hookctl.ErrInvalid, ErrTooLarge, MaxPayload)
	}
	p := payloadParser{d: xml.NewDecoder(strings.NewReader(text))}
	toks, err := p.parse()
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", hookctl.ErrInvalid, err)
	}
	return toks, nil
}

// payloadParser reads a payload with RawToken, checking what RawToken
// does not: matching end tags and the namespace rules.
type payloadParser struct {
	d      *xml.Decoder
	toks   []xml.Token
	open   []xml.Name          // raw names of the open elements
	scopes []map[string]string // prefixes declared by each open element
	roots  int
}

func (p *payloadParser) parse() ([]xml.Token, error) {
	for {
		tok, err := p.d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := p.start(t); err != nil {
				return nil, err
			}
		case xml.EndElement:
			n := len(p.open)
			if n == 0 || p.open[n-1] != t.Name {
				return nil, fmt.Errorf("unexpected end tag </%s>", rawName(t.Name))
			}
			p.open, p.scopes = p.open[:n-1], p.scopes[:n-1]
			p.toks = append(p.toks, xml.EndElement{Name: xml.Name{Local: rawName(t.Name)}})
		case xml.CharData:
			if len(p.open) == 0 {
				if strings.TrimSpace(string(t)) != "" {
					return nil, errors.New("text outside the element")
				}
				continue
			}
			p.toks = append(p.toks, t.Copy())
		case xml.Directive:
			return nil, errors.New("directives (<!DOCTYPE …>) are not allowed")
		}
	}
	if len(p.open) > 0 {
		return nil, fmt.Errorf("element <%s> is not closed", rawName(p.open[len(p.open)-1]))
	}
	if p.roots != 1 {
		return nil, fmt.Errorf("must be one XML element, got %d", p.roots)
	}
	return p.toks, nil
}

func (p *payloadParser) start(t xml.StartElement) error {
	if len(p.open) == 0 {
		if p.roots++; p.roots > 1 {
			return errors.New("must be one XML element, got more")
		}
	}
	scope := map[string]string{}
	out := xml.StartElement{Name: xml.Name{Local: rawName(t.Name)}}
	defaultDeclared := false
	for _, a := range t.Attr {
		switch {
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			defaultDeclared = true
		case a.Name.Space == "xmlns":
			if err := checkDecl(a.Name.Local, a.Value); err != nil {
				return err
			}
			scope[a.Name.Local] = a.Value
		}
	}
	p.open = append(p.open, t.Name)
	p.scopes = append(p.scopes, scope)
	if err := p.checkName(t.Name, "element"); err != nil {
		return err
	}
	if len(p.open) == 1 && !defaultDeclared {
		out.Attr = append(out.Attr, xml.Attr{Name: xml.Name{Local: "xmlns"}})
	}
	seen := map[xml.Name]bool{}
	for _, a := range t.Attr {
		if a.Name.Space != "xmlns" && !(a.Name.Space == "" && a.Name.Local == "xmlns") {
			if err := p.checkName(a.Name, "attribute"); err != nil {
				return err
			}
		}
		// Two attributes are the same if their names resolve alike.
		key := a.Name
		if key.Space != "" && key.Space != "xmlns" {
			key.Space = p.lookup(key.Space)
		}
		if seen[key] {
			return fmt.Errorf("attribute %s of <%s> given twice", rawName(a.Name), rawName(t.Name))
		}
		seen[key] = true
		out.Attr = append(out.Attr, xml.Attr{Name: xml.Name{Local: rawName(a.Name)}, Value: a.Value})
	}
	p.toks = append(p.toks, out)
	return nil
}

// checkDecl checks a declaration xmlns:prefix="ns".
func checkDecl(prefix, ns string) error {
	switch {
	case !isNCName(prefix):
		return fmt.Errorf("prefix %q is not an XML name", prefix)
	case prefix == "xmlns":
		return errors.New("the prefix xmlns cannot be declared")
	case prefix == "xml" && ns != nsXML, prefix != "xml" && ns == nsXML:
		return fmt.Errorf("the prefix xml is bound to %s only", nsXML)
	case ns == "":
		return fmt.Errorf("prefix %s declared with an empty namespace", prefix)
	}
	return nil
}

// checkName checks a raw name: NCName parts, prefix declared.
func (p *payloadParser) checkName(n xml.Name, what string) error {
	if !isNCName(n.Local) {
		return fmt.Errorf("%s name %q is not an XML name", what, rawName(n))
	}
	if n.Space == "" {
		return nil
	}
	if n.Space == "xmlns" {
		return fmt.Errorf("%s name %q uses the reserved prefix xmlns", what, rawName(n))
	}
	if !isNCName(n.Space) || p.lookup(n.Space) == "" {
		return fmt.Errorf("%s name %q: prefix %q is not declared", what, rawName(n), n.Space)
	}
	return nil
}

// lookup returns the namespace bound to prefix where the parser is.
func (p *payloadParser) lookup(prefix string) string {
	if prefix == "xml" {
		return nsXML
	}
	for i := len(p.scopes) - 1; i >= 0; i-- {
		if ns, ok := p.scopes[i][prefix]; ok {
			return ns
		}
	}
	return ""
}

// rawName is a name as written: "prefix:local" or "local".
func rawName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// tokenSlice replays toks; a new reader is needed for every send.
func tokenSlice(toks []xml.Token) xml.TokenReader {
	i := 0
	return xmlstream.ReaderFunc(func() (xml.Token, error) {
		if i >= len(toks) {
			return nil, io.EOF
		}
		i++
		return toks[i-1], nil
	})
}

// Retract removes item itemID from node; notify asks the service to send
// retract notifications (Prosody sends none otherwise).
func (s *Session) Retract(ctx context.Context, service, node, itemID string, notify bool) error {
	what := describe("retracting item "+strconv.Quote(itemID)+" from", service, node)
	iq, err := iqTo(service, stanza.SetIQ)
	if err != nil {
		return err
	}
	c, rctx, done, err := s.current(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	return s.reqErr(rctx, c, what, pubsub.DeleteIQ(rctx, c.xs, iq, node, itemID, notify))
}

// CreateNode creates node on service with the default configuration,
// except that subscribers are told of the node's deletion and of retracted
// items: ejabberd's defaults (pubsub#notify_delete false) would leave hooks
// on delete events silent, where Prosody notifies (docs/SERVERS.md).
func (s *Session) CreateNode(ctx context.Context, service, node string) error {
	what := describe("creating", service, node)
	return s.request(ctx, what, service, stanza.SetIQ, func() xml.TokenReader {
		return elem(NSPubSub, "pubsub", xmlstream.MultiReader(
			elem("", "create", nil, "node", node),
			elem("", "configure", notifyForm())))
	}, nil)
}

// notifyForm is the node configuration CreateNode submits.
func notifyForm() xml.TokenReader {
	field := func(v, val string) xml.TokenReader {
		return elem("", "field", elem("", "value", xmlstream.Token(xml.CharData(val))), "var", v)
	}
	return elem("jabber:x:data", "x", xmlstream.MultiReader(
		field("FORM_TYPE", "http://jabber.org/protocol/pubsub#node_config"),
		field("pubsub#notify_delete", "1"),
		field("pubsub#notify_retract", "1"),
	), "type", "submit")
}

// DeleteNode deletes node from service (subscribers get a delete event).
func (s *Session) DeleteNode(ctx context.Context, service, node string) error {
	what := describe("deleting", service, node)
	return s.request(ctx, what, service, stanza.SetIQ, func() xml.TokenReader {
		return elem(NSPubSubOwner, "pubsub", elem("", "delete", nil, "node", node))
	}, nil)
}

// Purge removes every item of node (subscribers get a purge event).
func (s *Session) Purge(ctx context.Context, service, node string) error {
	what := describe("purging", service, node)
	return s.request(ctx, what, service, stanza.SetIQ, func() xml.TokenReader {
		return elem(NSPubSubOwner, "pubsub", elem("", "purge", nil, "node", node))
	}, nil)
}

// Items fetches the items of node, at most max of them when max > 0 (the
// service chooses which, usually the newest). Items whose payload exceeds
// MaxPayload are left out and reported in an error wrapping ErrTooLarge
// returned with the others.
func (s *Session) Items(ctx context.Context, service, node string, max int) ([]Item, error) {
	what := describe("fetching items of", service, node)
	iq, err := iqTo(service, stanza.GetIQ)
	if err != nil {
		return nil, err
	}
	c, rctx, done, err := s.current(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	maxAttr := ""
	if max > 0 {
		maxAttr = strconv.Itoa(max)
	}
	resp, err := c.xs.SendIQElement(rctx, elem(NSPubSub, "pubsub", elem("", "items", nil, "node", node, "max_items", maxAttr)), iq)
	if err != nil {
		return nil, s.reqErr(rctx, c, what, err)
	}
	// The response holds the session's input until closed.
	defer resp.Close()
	items, err := decodeItems(resp)
	return items, s.reqErr(rctx, c, what, err)
}

// decodeItems reads an IQ response: a stanza error, or <pubsub><items>
// with <item> children.
func decodeItems(r xml.TokenReader) ([]Item, error) {
	d := &tokens{r: r}
	start, err := d.firstStart()
	if err != nil {
		return nil, err
	}
	if _, err := stanza.UnmarshalIQError(r, start); err != nil {
		return nil, err
	}
	var items []Item
	var skipped []error
	for {
		tok, err := d.next()
		if err != nil {
			return items, err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			if d.depth == 0 {
				return items, joinSkipped(skipped)
			}
		case xml.StartElement:
			if t.Name.Local == "item" && t.Name.Space == NSPubSub && d.depth == 4 {
				// Hooks get the same element as from a notification,
				// whether the item was fetched or pushed.
				t.Name.Space = NSPubSubEvent
				it, err := capture(d, t)
				if err != nil {
					return items, err
				}
				if it.tooLarge {
					skipped = append(skipped, fmt.Errorf("item %q skipped: %w (over %d bytes)", it.ID, ErrTooLarge, MaxPayload))
					continue
				}
				if it.invalid != nil {
					skipped = append(skipped, fmt.Errorf("item %q skipped: %w: %v", it.ID, hookctl.ErrInvalid, it.invalid))
					continue
				}
				items = append(items, it)
			}
		}
	}
}

func joinSkipped(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d items skipped: %w", len(errs), errs[0])
}
