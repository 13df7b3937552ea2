package python

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/runner"
)

// liberviaHook is a hook written against Libervia's API: item is read as a
// Twisted domish.Element, client.jid as a Twisted JID. It prints what it
// read as JSON.
const liberviaHook = `import json
import pickle
import xml.etree.ElementTree as ET

NS_ATOM = "http://www.w3.org/2005/Atom"

def hook(host, client, item):
    entry = item.firstChildElement()
    try:
        item["nope"]
        missing = "no error"
    except KeyError as e:
        missing = "KeyError %s" % e
    print(json.dumps({
        "id": item["id"],
        "getAttribute": item.getAttribute("id"),
        "getAttribute_missing": item.getAttribute("nope"),
        "getAttribute_default": item.getAttribute("nope", "d"),
        "hasAttribute": [item.hasAttribute("id"), item.hasAttribute("nope")],
        "missing": missing,
        "attributes": item.attributes,
        "name": item.name,
        "uri": item.uri,
        "payload": [entry.uri, entry.name],
        "title": str(entry.title),
        "by_name": [e.name for e in entry.elements(NS_ATOM, "title")],
        "children": [e.name for e in entry.elements()],
        "mixed": [c if isinstance(c, str) else c.name for c in entry.content.children],
        "no_child": entry.nope,
        "toXml": item.toXml(),
        "str": str(item),
        "et_tag": item.tag,
        "et_title": item.findtext("{%s}entry/{%s}title" % (NS_ATOM, NS_ATOM)),
        "et_same_child": item[0] is entry,
        "et_pickle": type(pickle.loads(pickle.dumps(item))).__name__ + " " + str(ET.tostring(pickle.loads(pickle.dumps(item))) == ET.tostring(item)),
        "profile": client.profile,
        "jid": [client.jid, client.jid.userhost(), client.jid.user, client.jid.host],
    }))
`

const liberviaXML = `<item xmlns="` + nsEvent + `" id="post-9" publisher="alice@example.org">` +
	`<entry xmlns="` + nsAtom + `"><title>Hi &amp; bye</title><id>urn:uuid:9</id>` +
	`<content type="xhtml">one <b>two</b> three</content></entry></item>`

type liberviaSeen struct {
	ID                  string            `json:"id"`
	GetAttribute        *string           `json:"getAttribute"`
	GetAttributeMissing *string           `json:"getAttribute_missing"`
	GetAttributeDefault string            `json:"getAttribute_default"`
	HasAttribute        []bool            `json:"hasAttribute"`
	Missing             string            `json:"missing"`
	Attributes          map[string]string `json:"attributes"`
	Name                string            `json:"name"`
	URI                 string            `json:"uri"`
	Payload             []string          `json:"payload"`
	Title               string            `json:"title"`
	ByName              []string          `json:"by_name"`
	Children            []string          `json:"children"`
	Mixed               []string          `json:"mixed"`
	NoChild             *string           `json:"no_child"`
	ToXML               string            `json:"toXml"`
	Str                 string            `json:"str"`
	ETTag               string            `json:"et_tag"`
	ETTitle             string            `json:"et_title"`
	ETSameChild         bool              `json:"et_same_child"`
	ETPickle            string            `json:"et_pickle"`
	Profile             string            `json:"profile"`
	JID                 []string          `json:"jid"`
}

// TestLiberviaStyleHookRunsUnchanged runs a hook file written for Libervia
// (domish item, Twisted JID) in each Python type, through a real worker.
func TestLiberviaStyleHookRunsUnchanged(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "libervia_hook.py"), liberviaHook)
	code := liberviaHook + "\nhook(host, client, item)\n"
	opts := Options{WorkDir: t.TempDir(), ProfileJID: func(p string) string { return "bot@example.org" }}
	want := liberviaSeen{
		ID: "post-9", GetAttribute: ptr("post-9"), GetAttributeDefault: "d",
		HasAttribute: []bool{true, false}, Missing: "KeyError 'nope'",
		Attributes: map[string]string{"id": "post-9", "publisher": "alice@example.org"},
		Name:       "item", URI: nsEvent, Payload: []string{nsAtom, "entry"},
		Title: "Hi & bye", ByName: []string{"title"}, Children: []string{"title", "id", "content"},
		Mixed: []string{"one ", "b", " three"},
		// domish's serialisation: single quotes, namespaces as default ones.
		ToXML: `<item xmlns='` + nsEvent + `' id='post-9' publisher='alice@example.org'>` +
			`<entry xmlns='` + nsAtom + `'><title>Hi &amp; bye</title><id>urn:uuid:9</id>` +
			`<content type='xhtml'>one <b>two</b> three</content></entry></item>`,
		ETTag: "{" + nsEvent + "}item", ETTitle: "Hi & bye", ETSameChild: true,
		// Pickled as the plain Element it was, which any process can load.
		ETPickle: "Element True",
		Profile:  "default", JID: []string{"bot@example.org", "bot@example.org", "bot", "example.org"},
	}
	for _, tc := range []struct {
		typ hookctl.Type
		arg string
	}{{hookctl.TypePythonFile, file}, {hookctl.TypePythonCode, code}} {
		t.Run(string(tc.typ), func(t *testing.T) {
			r := newRunner(t, opts, hookctl.Hook{Key: hookctl.Key{Type: tc.typ, Arg: tc.arg}}, newHost())
			ev := publishEvent("post-9")
			ev.ItemXML = liberviaXML
			res := run(t, r, ev)
			wantOK(t, res)
			var got liberviaSeen
			if err := json.Unmarshal([]byte(strings.TrimSpace(res.Output)), &got); err != nil {
				t.Fatalf("output %q: %v", res.Output, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("what the Libervia hook read (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLiberviaBackendObjectsFailClearly: what only Libervia's live backend
// has fails with an AttributeError naming the difference and what hookctl
// offers, and hasattr() says False.
func TestLiberviaBackendObjectsFailClearly(t *testing.T) {
	requirePython(t)
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "backend.py"), `
def hook(host, client, item):
    print("hasattr", hasattr(host, "memory"), hasattr(client, "send"), hasattr(host, "publish"))
    try:
        client.send(item)
    except AttributeError as e:
        print(type(e).__name__, e)
    host.bridge.psItemsGet("", "node")
`)
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonFile, Arg: file}}, newHost())
	res := run(t, r, publishEvent("p1"))
	if res.Outcome != runner.Failed {
		t.Fatalf("outcome %s, want failed; output:\n%s", res.Outcome, res.Output)
	}
	for _, want := range []string{
		"hasattr False False True\n",
		"NotLiberviaError client.send: hookctl's client is not Libervia's live XMPP client: it carries the profile's data only; client offers client.profile, client.jid (the profile's bare JID) and client.event, and host offers host.log(",
		`backend.py", line 8, in hook`,
	} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("output lacks %q:\n%s", want, res.Output)
		}
	}
	wantErr := "NotLiberviaError: host.bridge: hookctl's host is not Libervia's backend: the hook runs in a hookctl worker process, without the backend's objects (bridge, memory, plugins, ...); host offers host.log(*args, level='info') and host.publish(service, node, payload, item_id=None, loop=False)"
	if res.Err == nil || !strings.Contains(res.Err.Error(), wantErr) {
		t.Errorf("run error %v, want it to contain %q", res.Err, wantErr)
	}
}

// TestItemMatchesTwistedDomish compares what hookctl's item answers with
// what Twisted's own domish.Element answers for the same XML, read side
// by read side (testdata/domish_diff.py), when a python3 with Twisted is
// installed (Debian's python3-twisted is in /usr/bin/python3).
func TestItemMatchesTwistedDomish(t *testing.T) {
	py := ""
	for _, c := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(c, "-c", "import twisted.words.xish.domish").Run() == nil {
			py = c
			break
		}
	}
	if py == "" {
		t.Skip("no python3 with Twisted installed")
	}
	compat := filepath.Join(t.TempDir(), "domish.py")
	writeFile(t, compat, shimDomish)
	samples, err := os.ReadFile(filepath.Join("testdata", "domish_samples.xml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("testdata", "domish_diff.py"), compat)
	cmd.Stdin = strings.NewReader(string(samples))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", py, err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		tw := sc.Text()
		if !sc.Scan() {
			t.Fatalf("odd number of lines: %q", tw)
		}
		var a, b map[string]any
		if err := json.Unmarshal([]byte(tw), &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(sc.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a["twisted"], b["hookctl"]); diff != "" {
			t.Errorf("sample %d: hookctl's item differs from Twisted's domish (-twisted +hookctl):\n%s", n+1, diff)
		}
		n++
	}
	lines := strings.Count(strings.TrimSpace(string(samples)), "\n") + 1
	if n != lines {
		t.Errorf("compared %d samples, want %d", n, lines)
	}
}

// TestItemAfterHookEdits: elements and comments a hook adds itself (plain
// ElementTree ones) are served by both sides, and domish's write side
// builds what Twisted's does.
func TestItemAfterHookEdits(t *testing.T) {
	requirePython(t)
	code := `import xml.etree.ElementTree as ET
item.append(ET.Comment("note"))
item[1].tail = "after"
ET.SubElement(item, "{urn:x}added", {"a": "1"})
print([e.tag for e in item.iter() if isinstance(e.tag, str)])
print([c if isinstance(c, str) else c.name for c in item.children], item.added["a"])
print(item.toXml())
reply = item.addElement(("urn:r", "reply"), content="hi & bye")
reply.addElement("sub", content="s")
reply["k"] = "v"
print(reply.toXml(), item[-1] is reply, reply.parent is item)
try:
    item.addRawXml("<x/>")
except AttributeError as e:
    print(type(e).__name__)
`
	r := newRunner(t, Options{}, hookctl.Hook{Key: hookctl.Key{Type: hookctl.TypePythonCode, Arg: code}}, newHost())
	res := run(t, r, publishEvent("e1"))
	wantOK(t, res)
	want := "['{" + nsEvent + "}item', '{" + nsAtom + "}entry', '{" + nsAtom + "}title', '{urn:x}added']\n" +
		"['entry', 'after', 'added'] 1\n" +
		"<item xmlns='" + nsEvent + "' id='e1'><entry xmlns='" + nsAtom + "'><title>Hi e1</title></entry>after<added xmlns='urn:x' a='1'/></item>\n" +
		// domish's write side, as Twisted writes the same calls.
		"<reply xmlns='urn:r' k='v'>hi &amp; bye<sub>s</sub></reply> True True\n" +
		"NotLiberviaError\n"
	if res.Output != want {
		t.Errorf("output:\n%s\nwant:\n%s", res.Output, want)
	}
}
