package xmppsession

import (
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"hookctl.dev/hookctl"
)

func decodeString(t *testing.T, from, msg string) ([]hookctl.Event, error) {
	t.Helper()
	return DecodeEvent("p", from, xml.NewDecoder(strings.NewReader(msg)))
}

var ignoreReceived = cmpopts.IgnoreFields(hookctl.Event{}, "Received")

func TestDecodeEventKinds(t *testing.T) {
	msg := `<message xmlns="jabber:client" from="pubsub.example.org" to="bot@example.org/hookctl" type="headline">
<event xmlns="http://jabber.org/protocol/pubsub#event">
  <items node="blog">
    <item id="i1" publisher="alice@example.org"><entry xmlns="http://www.w3.org/2005/Atom" xml:lang="en"><title type="text">Hi &amp; &lt;bye&gt;</title><x:ref xmlns:x="urn:x" x:href="h"/></entry></item>
    <item id="i2"/>
    <retract id="i0"/>
  </items>
  <purge node="blog"/>
  <delete node="old"><redirect uri="xmpp:x"/></delete>
</event>
<body>ignored</body>
</message>`
	got, err := decodeString(t, "ignored@example.org", msg)
	if err != nil {
		t.Fatal(err)
	}
	base := hookctl.Event{Profile: "p", Service: "pubsub.example.org", Node: "blog"}
	with := func(f func(*hookctl.Event)) hookctl.Event { e := base; f(&e); return e }
	want := []hookctl.Event{
		with(func(e *hookctl.Event) {
			e.Kind, e.ItemID, e.Publisher = hookctl.EventPublish, "i1", "alice@example.org"
			e.Payload = `<entry xmlns="http://www.w3.org/2005/Atom" xml:lang="en"><title type="text">Hi &amp; &lt;bye&gt;</title><ref xmlns="urn:x" xmlns:ns0="urn:x" ns0:href="h"/></entry>`
			e.ItemXML = `<item xmlns="http://jabber.org/protocol/pubsub#event" id="i1" publisher="alice@example.org">` + e.Payload + `</item>`
		}),
		with(func(e *hookctl.Event) {
			e.Kind, e.ItemID = hookctl.EventPublish, "i2"
			e.ItemXML = `<item xmlns="http://jabber.org/protocol/pubsub#event" id="i2"/>`
		}),
		with(func(e *hookctl.Event) {
			e.Kind, e.ItemID = hookctl.EventRetract, "i0"
			e.ItemXML = `<retract xmlns="http://jabber.org/protocol/pubsub#event" id="i0"/>`
		}),
		with(func(e *hookctl.Event) {
			e.Kind = hookctl.EventPurge
			e.ItemXML = `<purge xmlns="http://jabber.org/protocol/pubsub#event" node="blog"/>`
		}),
		with(func(e *hookctl.Event) {
			e.Kind, e.Node = hookctl.EventDelete, "old"
			e.ItemXML = `<delete xmlns="http://jabber.org/protocol/pubsub#event" node="old"><redirect uri="xmpp:x"/></delete>`
		}),
	}
	if diff := cmp.Diff(want, got, ignoreReceived); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, ev := range got {
		if ev.Received.IsZero() {
			t.Errorf("%s %s: Received not set", ev.Kind, ev.ItemID)
		}
	}
}

// The re-encoded payload must mean the same XML: same names, namespaces,
// attributes and text, including an undeclared default namespace.
func TestDecodeEventPayloadRoundTrip(t *testing.T) {
	payload := `<a xmlns="urn:a" k="v&quot;&#xA;"><b xmlns=""><c>t&lt;</c></b><p:d xmlns:p="urn:p" p:x="1">  sp  </p:d></a>`
	msg := `<message from="bob@example.org/phone"><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n"><item id="1">` + payload + `</item></items></event></message>`
	got, err := decodeString(t, "", msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %d events, want 1", len(got))
	}
	if got[0].Service != "bob@example.org" {
		t.Errorf("Service = %q, want the bare JID bob@example.org", got[0].Service)
	}
	if diff := cmp.Diff(tokensOf(t, payload), tokensOf(t, got[0].Payload)); diff != "" {
		t.Errorf("payload %s\nmeans something else (-want +got):\n%s", got[0].Payload, diff)
	}
}

// tokensOf returns the meaning of an XML text: resolved names, attributes
// other than declarations, and text.
func tokensOf(t *testing.T, s string) []string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	var out []string
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("re-parsing %s: %v", s, err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			line := "<{" + v.Name.Space + "}" + v.Name.Local
			for _, a := range v.Attr {
				if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
					continue
				}
				line += " {" + a.Name.Space + "}" + a.Name.Local + "=" + a.Value
			}
			out = append(out, line)
		case xml.EndElement:
			out = append(out, "</"+v.Name.Local)
		case xml.CharData:
			out = append(out, "text:"+string(v))
		}
	}
}

func TestDecodeEventFromFallback(t *testing.T) {
	// No from: an own-PEP notification whose from the stream layer stripped.
	msg := `<message><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n"><retract id="x"/></items></event></message>`
	got, err := decodeString(t, "me@example.org/hookctl", msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Service != "me@example.org" {
		t.Fatalf("got %+v, want one event from me@example.org", got)
	}
}

func TestDecodeEventNoEvent(t *testing.T) {
	got, err := decodeString(t, "", `<message from="a@b"><body>hi</body><event xmlns="other"><items node="n"><item id="1"/></items></event></message>`)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want no events and no error", got, err)
	}
}

func TestDecodeEventTooLarge(t *testing.T) {
	big := strings.Repeat("x", MaxPayload+1)
	msg := `<message from="s"><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n">` +
		`<item id="big"><p xmlns="urn:p">` + big + `</p></item><item id="ok"><p xmlns="urn:p">small</p></item></items></event></message>`
	got, err := decodeString(t, "", msg)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), `"big"`) {
		t.Fatalf("err = %v, want ErrTooLarge naming item big", err)
	}
	if len(got) != 1 || got[0].ItemID != "ok" || got[0].Payload != `<p xmlns="urn:p">small</p>` {
		t.Fatalf("got %+v, want only item ok", got)
	}
	skipped := SkippedItems(err)
	if len(skipped) != 1 || skipped[0].ItemID != "big" || skipped[0].Node != "n" || skipped[0].Service != "s" || !errors.Is(skipped[0], ErrTooLarge) {
		t.Fatalf("SkippedItems = %+v, want item big of node n", skipped)
	}
}

func TestDecodeEventTooDeepIsASkippedItem(t *testing.T) {
	deep := strings.Repeat("<a>", 300) + strings.Repeat("</a>", 300)
	msg := `<message from="s"><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n">` +
		`<item id="ok"><p xmlns="urn:p">1</p></item><item id="deep">` + deep + `</item></items></event></message>`
	got, err := decodeString(t, "", msg)
	if len(got) != 1 || got[0].ItemID != "ok" {
		t.Fatalf("got %+v, want item ok", got)
	}
	skipped := SkippedItems(err)
	if len(skipped) != 1 || skipped[0].ItemID != "deep" || !errors.Is(skipped[0], hookctl.ErrInvalid) {
		t.Fatalf("SkippedItems(%v) = %+v, want item deep, invalid", err, skipped)
	}
}

// encoding/xml's decoder accepts names XML does not (<a:0>) and repeated
// attributes: such an item is reported as skipped (an error run), never
// re-encoded as text a hook's parser would refuse; the others still go.
func TestDecodeEventNamesNotXMLAreSkipped(t *testing.T) {
	for _, bad := range []string{
		`<a:0 xmlns:a="urn:a"/>`,
		`<p xmlns="urn:p" xmlns:a="urn:a" a:1x="v"/>`,
		`<p xmlns="urn:p" a:x="1" b:x="2" xmlns:a="urn:q" xmlns:b="urn:q"/>`,
		`<p xmlns="urn:p" x="1" x="2"/>`,
	} {
		msg := `<message from="s"><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n">` +
			`<item id="bad">` + bad + `</item><item id="ok"><p xmlns="urn:p">1</p></item></items></event></message>`
		got, err := decodeString(t, "", msg)
		if len(got) != 1 || got[0].ItemID != "ok" {
			t.Errorf("%s: got %+v, want item ok only", bad, got)
		}
		skipped := SkippedItems(err)
		if len(skipped) != 1 || skipped[0].ItemID != "bad" || !errors.Is(skipped[0], hookctl.ErrInvalid) {
			t.Errorf("%s: SkippedItems(%v) = %+v, want item bad, invalid", bad, err, skipped)
		}
	}
	for _, good := range []string{"a", "_x", "é-1.2", "a·b", "日本"} {
		if !isNCName(good) {
			t.Errorf("isNCName(%q) = false", good)
		}
	}
	for _, bad := range []string{"", "0", "-a", ".a", "a:b", "a b", "·"} {
		if isNCName(bad) {
			t.Errorf("isNCName(%q) = true", bad)
		}
	}
}

func TestDecodeEventMalformed(t *testing.T) {
	for _, msg := range []string{
		``,
		`<iq/>`,
		`<message><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n"><item id="1"><a>`,
		`<message><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n"><item id="1"></b></item></items></event></message>`,
		`<message>` + strings.Repeat("<a>", 1000) + strings.Repeat("</a>", 1000) + `</message>`,
	} {
		_, err := decodeString(t, "", msg)
		if !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("%.60q: err = %v, want ErrInvalid", msg, err)
		}
	}
	// Events completed before the fault are kept.
	got, err := decodeString(t, "", `<message><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n"><item id="1"/><item id="2">`)
	if err == nil || len(got) != 1 || got[0].ItemID != "1" {
		t.Fatalf("truncated: got %v, %v; want item 1 and an error", got, err)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(`<message from="s"><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n"><item id="1" publisher="p"><a xmlns="urn:a" xml:lang="en"><b xmlns="">t</b></a></item><retract id="2"/></items><purge node="n"/><delete node="n"/></event></message>`)
	f.Add(`<message><event xmlns="http://jabber.org/protocol/pubsub#event"><items node="n"><item><p:x xmlns:p="u" p:a="&amp;"/></item>`)
	f.Add(`<message type="headline"/>`)
	f.Fuzz(func(t *testing.T, msg string) {
		events, _ := DecodeEvent("p", "me@example.org", xml.NewDecoder(strings.NewReader(msg)))
		for _, ev := range events {
			if !ev.Kind.Valid() {
				t.Fatalf("invalid kind %q", ev.Kind)
			}
			// Whatever we re-encode must be well-formed XML again.
			for _, text := range []string{ev.Payload, ev.ItemXML} {
				d := xml.NewDecoder(strings.NewReader("<r>" + text + "</r>"))
				for {
					_, err := d.Token()
					if err != nil {
						if err.Error() != "EOF" {
							t.Fatalf("re-encoded %q is not well-formed: %v", text, err)
						}
						break
					}
				}
			}
		}
	})
}

// Fetched items (catch-up) go through the same re-encoding: a payload in
// no namespace stays in none, and an item whose names are not XML names
// is left out and reported, never re-encoded ill-formed.
func TestDecodeItemsFetched(t *testing.T) {
	resp := `<iq xmlns="jabber:client" type="result" id="1"><pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="n">` +
		`<item id="plain"><plain xmlns="">x</plain></item>` +
		`<item id="bad"><a:0 xmlns:a="urn:a"/></item>` +
		`<item id="ns"><p xmlns="urn:p"><q xmlns="">y</q></p></item>` +
		`</items></pubsub></iq>`
	items, err := decodeItems(xml.NewDecoder(strings.NewReader(resp)))
	if err == nil || !errors.Is(err, hookctl.ErrInvalid) || !strings.Contains(err.Error(), `"bad"`) {
		t.Errorf("err = %v, want item bad reported invalid", err)
	}
	if len(items) != 2 {
		t.Fatalf("items = %+v, want plain and ns", items)
	}
	for i, want := range []struct{ id, payload, xml string }{
		{"plain", `<plain>x</plain>`, `<item xmlns="http://jabber.org/protocol/pubsub#event" id="plain"><plain xmlns="">x</plain></item>`},
		{"ns", `<p xmlns="urn:p"><q xmlns="">y</q></p>`, `<item xmlns="http://jabber.org/protocol/pubsub#event" id="ns"><p xmlns="urn:p"><q xmlns="">y</q></p></item>`},
	} {
		if it := items[i]; it.ID != want.id || it.Payload != want.payload || it.XML != want.xml {
			t.Errorf("item %d = %+v, want %+v", i, it, want)
		}
	}
}
