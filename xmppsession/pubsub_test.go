package xmppsession

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"hookctl.dev/hookctl"
	"mellium.im/xmlstream"
)

// encodePayload writes the payload's tokens as Publish does: through an
// encoding/xml Encoder, inside <pubsub><publish><item>.
func encodePayload(t *testing.T, payload string) string {
	t.Helper()
	toks, err := parsePayload(payload)
	if err != nil {
		t.Fatalf("parsePayload(%s): %v", payload, err)
	}
	var b bytes.Buffer
	e := xml.NewEncoder(&b)
	r := elem(NSPubSub, "pubsub", elem("", "publish", elem("", "item", tokenSlice(toks), "id", "1"), "node", "n"))
	if _, err := xmlstream.Copy(e, r); err != nil {
		t.Fatal(err)
	}
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// The payload is sent as written (prefixes, declarations), and one in no
// namespace stays in none instead of taking <pubsub>'s.
func TestPublishPayloadAsWritten(t *testing.T) {
	const pre = `<pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="n"><item id="1">`
	const post = `</item></publish></pubsub>`
	for _, c := range []struct{ in, want string }{
		{`<plain>x</plain>`, `<plain xmlns="">x</plain>`},
		{`<a xmlns="urn:a"><b/></a>`, `<a xmlns="urn:a"><b></b></a>`},
		{`<p:a xmlns:p="urn:p" p:k="v"><b/><p:c xml:lang="en">t</p:c></p:a>`, `<p:a xmlns="" xmlns:p="urn:p" p:k="v"><b></b><p:c xml:lang="en">t</p:c></p:a>`},
		{`<a xmlns="urn:a"><b xmlns=""><c>&amp;&lt;é</c></b></a>`, `<a xmlns="urn:a"><b xmlns=""><c>&amp;&lt;é</c></b></a>`},
	} {
		got := encodePayload(t, c.in)
		if want := pre + c.want + post; got != want {
			t.Errorf("%s sent as\n%s\nwant\n%s", c.in, got, want)
		}
		// And it means what was given once inside <item>.
		inner := strings.TrimSuffix(strings.TrimPrefix(got, pre), post)
		if diff := cmp.Diff(tokensOf(t, c.in), tokensOf(t, inner)); diff != "" {
			t.Errorf("%s means something else sent (-want +got):\n%s", c.in, diff)
		}
	}
}

// What encoding/xml accepts but a server would answer by closing the
// stream is refused before sending.
func TestPublishPayloadRefused(t *testing.T) {
	for _, bad := range []string{
		`<a>`, `<a></b>`, `<a/><b/>`, `text`, `<a/>x`,
		`<p:a/>`, `<a p:k="v"/>`, `<a:0 xmlns:a="urn:a"/>`, `<a xmlns:0="urn:a"/>`,
		`<a k="1" k="2"/>`, `<a xmlns:p="u" xmlns:q="u" p:k="1" q:k="2"/>`,
		`<a xmlns:p=""/>`, `<xmlns:a/>`, `<!DOCTYPE a><a/>`,
	} {
		if _, err := parsePayload(bad); !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("parsePayload(%s) = %v, want ErrInvalid", bad, err)
		}
	}
}

// FuzzPublishPayload: a payload parsePayload accepts is sent as
// well-formed XML that means what was given. `make fuzz` explores; the
// gate replays the seeds and testdata/fuzz.
func FuzzPublishPayload(f *testing.F) {
	for _, s := range []string{
		`<plain>x</plain>`, `<a xmlns="urn:a"><b xmlns=""/></a>`, `<p:a xmlns:p="urn:p" p:k="v"><p:b/></p:a>`,
		`<a xml:lang="en" k="&quot;&#xA;">&lt;&amp;</a>`, `<?xml version="1.0"?><a/>`, `<a><!-- c --><b/></a>`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		if _, err := parsePayload(payload); err != nil {
			return
		}
		const pre = `<pubsub xmlns="http://jabber.org/protocol/pubsub"><publish node="n"><item id="1">`
		sent := encodePayload(t, payload)
		d := xml.NewDecoder(strings.NewReader(sent))
		for {
			if _, err := d.Token(); err != nil {
				if err.Error() != "EOF" {
					t.Fatalf("%q sent as %q: not well-formed: %v", payload, sent, err)
				}
				break
			}
		}
		inner := strings.TrimSuffix(strings.TrimPrefix(sent, pre), `</item></publish></pubsub>`)
		if diff := cmp.Diff(inElement(tokensOf(t, payload)), tokensOf(t, inner)); diff != "" {
			t.Fatalf("%q sent as %q means something else (-want +got):\n%s", payload, inner, diff)
		}
	})
}

// inElement drops the text outside the root element (whitespace around it,
// which is not sent).
func inElement(lines []string) []string {
	var out []string
	depth := 0
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "<{"):
			depth++
		case l == "</" || strings.HasPrefix(l, "</"):
			depth--
		case depth == 0:
			continue
		}
		out = append(out, l)
	}
	return out
}
