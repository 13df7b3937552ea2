package daemon

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
	"hookctl.dev/hookctl/internal/xmpptest"
)

// payloadCorpus is what TestPayloadRoundTrip publishes: each namespace
// situation a payload can be in, text that needs escaping, and size.
func payloadCorpus() map[string]string {
	var many strings.Builder
	many.WriteString(`<many xmlns="urn:m">`)
	for i := range 5000 {
		fmt.Fprintf(&many, `<c n="%d">%d</c>`, i, i)
	}
	many.WriteString(`</many>`)
	return map[string]string{
		"none":     `<plain>x<sub k="v">y</sub></plain>`,
		"default":  `<a xmlns="urn:a"><b>t</b></a>`,
		"prefixed": `<p:a xmlns:p="urn:p" p:k="v"><p:b>t</p:b><c>no namespace</c></p:a>`,
		"mixed":    `<a xmlns="urn:a" xmlns:x="urn:x"><x:b x:k="1" k="2"><c xmlns="">none</c></x:b><d xml:lang="fr">é</d></a>`,
		"unicode":  `<u xmlns="urn:u" t="ü—日本">日本語 ☃ 😀 café</u>`,
		"entities": `<e xmlns="urn:e" q="&quot;&apos;&lt;&gt;&amp;">&lt;tag&gt; &amp; &#x263A; &#65;</e>`,
		"spaces":   `<w xmlns="urn:w">  a <b/> c  </w>`,
		"many":     many.String(),
	}
}

// canonical is the meaning of an XML text as a list of lines: resolved
// element and attribute names, attributes sorted (servers do not keep their
// order), namespace declarations left out, adjacent text merged.
func canonical(t *testing.T, s string) []string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	var out []string
	text := ""
	flush := func() {
		if text != "" {
			out = append(out, "text:"+text)
			text = ""
		}
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			flush()
			return out
		}
		if err != nil {
			t.Fatalf("parsing %.200s: %v", s, err)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			flush()
			var attrs []string
			for _, a := range v.Attr {
				if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
					continue
				}
				space := a.Name.Space
				if space == "xml" {
					space = "http://www.w3.org/XML/1998/namespace"
				}
				attrs = append(attrs, "{"+space+"}"+a.Name.Local+"="+a.Value)
			}
			slices.Sort(attrs)
			out = append(out, "<{"+v.Name.Space+"}"+v.Name.Local+" "+strings.Join(attrs, " "))
		case xml.EndElement:
			flush()
			out = append(out, "</")
		case xml.CharData:
			text += string(v)
		}
	}
}

// TestPayloadRoundTrip publishes a corpus of payloads through the API (the
// door of `hookctl pubsub publish`) and through a Python hook's
// host.publish, and checks that a Python hook (the element it gets), an
// exec hook (the payload of its stdin JSON), an http hook (the payload of
// its body) and an expr hook (item.payload, published on and recorded)
// receive each payload as it was given, namespace for namespace.
func TestPayloadRoundTrip(t *testing.T) {
	srv := xmpptest.Start(t, xmpptest.Prosody, xmpptest.Options{Admins: []string{"bot@localhost"}, MemoryStorage: true})
	cfg := testConfig(t, srv, "bot")
	b := startBackend(t, cfg)
	dir := t.TempDir()
	corpus := payloadCorpus()
	names := make([]string, 0, len(corpus))
	for name := range corpus {
		names = append(names, name)
	}
	slices.Sort(names)
	cj, _ := json.Marshal(corpus)
	corpusFile := filepath.Join(dir, "corpus.json")
	if err := os.WriteFile(corpusFile, cj, 0o644); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	bodies := map[string]string{} // "node/item" → payload of the http body
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev hookctl.Event
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		bodies[ev.Node+"/"+ev.ItemID] = ev.Payload
		mu.Unlock()
	}))
	defer hs.Close()

	subs := 0
	hook := func(node string, typ hookctl.Type, arg string) {
		t.Helper()
		b.create(hookctl.Hook{Key: hookctl.Key{Service: srv.PubSub, Node: node, Type: typ, Arg: arg}})
		subs++
	}
	// What each hook type got goes to OUT/<type>/<node>/<item id>.
	for _, typ := range []string{"python", "exec", "expr", "catchup"} {
		for _, node := range []string{"rt-api", "rt-host"} {
			if err := os.MkdirAll(filepath.Join(dir, typ, node), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	pyRecorder := filepath.Join(dir, "record.py")
	if err := os.WriteFile(pyRecorder, fmt.Appendf(nil, `import os, xml.etree.ElementTree as ET
def hook(host, client, item):
    ev = client.event
    assert item.tag == "{http://jabber.org/protocol/pubsub#event}item", item.tag
    text = ET.tostring(item[0], encoding="unicode") if len(item) else ""
    with open(os.path.join(%q, "python", ev.node, ev.item_id), "w", encoding="utf-8") as f:
        f.write(text)
`, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	execRecorder := script(t, dir, "record-exec.sh", `cat > "`+dir+`/exec/$HOOK_NODE/$HOOK_ITEM_ID"`+"\n")
	for _, node := range []string{"rt-api", "rt-host"} {
		b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: node})
		b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: node + "-expr"})
		hook(node, hookctl.TypePythonFile, pyRecorder)
		hook(node, hookctl.TypeExec, execRecorder)
		hook(node, hookctl.TypeHTTP, hs.URL+"/"+node)
		// expr sees item.payload: it publishes it on, where exec records it.
		hook(node, hookctl.TypeExpr, fmt.Sprintf(`event.kind == "publish" && publish(event.service, %q, item.payload, item.id) != ""`, node+"-expr"))
		hook(node+"-expr", hookctl.TypeExec, script(t, dir, "record-expr-"+node+".sh",
			`cat > "`+dir+`/expr/`+node+`/$HOOK_ITEM_ID"`+"\n"))
	}
	// The host.publish door: a Python hook publishes corpus[id] as text.
	b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: "rt-src"})
	hook("rt-src", hookctl.TypePythonCode, fmt.Sprintf(`import json
corpus = json.load(open(%q, encoding="utf-8"))
host.publish(client.event.service, "rt-host", corpus[client.event.item_id], item_id=client.event.item_id)
`, corpusFile))
	b.waitSubscribed("default", 5)

	for _, name := range names {
		b.pubsub("default", api.PubSubRequest{Op: api.OpPublish, Service: srv.PubSub, Node: "rt-api", ItemID: name, Payload: corpus[name]})
		b.pubsub("default", api.PubSubRequest{Op: api.OpPublish, Service: srv.PubSub, Node: "rt-src", ItemID: name, Payload: `<go xmlns="urn:go"/>`})
	}
	for _, node := range []string{"rt-api", "rt-host", "rt-api-expr", "rt-host-expr"} {
		runs := b.waitRuns(api.RunQuery{Node: node}, len(names)*map[bool]int{true: 1, false: 4}[strings.HasSuffix(node, "-expr")])
		for _, r := range runs {
			if r.Outcome != "ok" {
				t.Errorf("%s run of %s on %s: %s %s\n%s", r.Hook, r.ItemID, node, r.Outcome, r.Error, r.Output)
			}
		}
	}
	// Items fetched by catch-up (published on a node without hooks, then a
	// hook added with catchup: all) come through another decoder path: the
	// same payloads again.
	b.pubsub("default", api.PubSubRequest{Op: api.OpNodeCreate, Service: srv.PubSub, Node: "rt-cu"})
	for _, name := range names {
		b.pubsub("default", api.PubSubRequest{Op: api.OpPublish, Service: srv.PubSub, Node: "rt-cu", ItemID: name, Payload: corpus[name]})
	}
	if err := os.MkdirAll(filepath.Join(dir, "catchup", "rt-cu"), 0o755); err != nil {
		t.Fatal(err)
	}
	catchupRecorder := filepath.Join(dir, "catchup-record.sh")
	if err := os.WriteFile(catchupRecorder, []byte("#!/bin/sh\ncat > \""+dir+"/catchup/$HOOK_NODE/$HOOK_ITEM_ID\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	b.create(hookctl.Hook{Key: hookctl.Key{Service: srv.PubSub, Node: "rt-cu", Type: hookctl.TypeExec, Arg: catchupRecorder}, Catchup: hookctl.CatchupAll})
	waitUntil(t, 20*time.Second, "catch-up runs", func() (bool, string) {
		n := 0
		for _, r := range b.runs(api.RunQuery{Node: "rt-cu"}) {
			if r.Catchup && r.Outcome == "ok" {
				n++
			}
		}
		return n >= len(names), fmt.Sprintf("%d caught up", n)
	})
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	for _, node := range []string{"rt-api", "rt-host"} {
		for _, name := range names {
			want := canonical(t, corpus[name])
			var execEv, exprEv, catchupEv hookctl.Event
			if node == "rt-api" {
				if err := json.Unmarshal([]byte(read(filepath.Join(dir, "catchup", "rt-cu", name))), &catchupEv); err != nil || !catchupEv.Catchup {
					t.Errorf("caught-up rt-cu/%s: %v (catchup %v)", name, err, catchupEv.Catchup)
				}
				if diff := cmp.Diff(want, canonical(t, catchupEv.Payload)); diff != "" {
					t.Errorf("caught-up %s got as\n%.300s\n(-want +got):\n%.2000s", name, catchupEv.Payload, diff)
				}
			}
			if err := json.Unmarshal([]byte(read(filepath.Join(dir, "exec", node, name))), &execEv); err != nil {
				t.Errorf("exec stdin of %s/%s: %v", node, name, err)
			}
			if err := json.Unmarshal([]byte(read(filepath.Join(dir, "expr", node, name))), &exprEv); err != nil {
				t.Errorf("expr's item on %s-expr/%s: %v", node, name, err)
			}
			mu.Lock()
			body := bodies[node+"/"+name]
			mu.Unlock()
			for typ, got := range map[string]string{
				"python": read(filepath.Join(dir, "python", node, name)),
				"exec":   execEv.Payload,
				"http":   body,
				"expr":   exprEv.Payload,
			} {
				if diff := cmp.Diff(want, canonical(t, got)); diff != "" {
					t.Errorf("%s hook on %s got %s as\n%.300s\n(-want +got):\n%.2000s", typ, node, name, got, diff)
				}
			}
		}
	}
}
