package daemon

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

// liberviaStyle runs a hook file written the Libervia way (item read as a
// Twisted domish.Element, client.jid as a Twisted JID) unchanged through
// the real backend and Prosody: publish, then retract.
func (e *pyEnv) liberviaStyle(t *testing.T) {
	out := filepath.Join(e.dir, "libervia.out")
	path := e.write("libervia_neat.py", fmt.Sprintf(`OUT = %q

def hook(host, client, item):
    with open(OUT, "a") as f:
        if item.name == "retract":
            f.write("retracted %%s\n" %% item["id"])
            return
        payload = item.firstChildElement()
        f.write("id %%s by %%s on %%s\n" %% (item["id"], client.jid.userhost(), client.profile))
        f.write("payload {%%s}%%s\n" %% (payload.uri, payload.name))
        f.write("title %%s\n" %% payload.title)
        for child in payload.elements():
            f.write("child %%s %%s\n" %% (child.name, str(child)))
        f.write("xml %%s\n" %% item.toXml())
`, out))
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "libervia", Type: hookctl.TypePythonFile, Arg: path}})

	e.publish("libervia", "lib-1", "<entry xmlns='http://www.w3.org/2005/Atom'><title>Neat &amp; tidy</title><id>urn:uuid:1</id></entry>")
	e.b.waitRuns(api.RunQuery{Node: "libervia"}, 1)
	e.b.pubsub("default", api.PubSubRequest{Op: api.OpRetract, Service: e.srv.PubSub, Node: "libervia", ItemID: "lib-1"})
	runs := e.b.waitRuns(api.RunQuery{Node: "libervia"}, 2)
	for _, r := range runs {
		if r.Outcome != "ok" {
			t.Errorf("run %+v, want ok", r)
		}
	}
	want := []string{
		"id lib-1 by bot@localhost on default",
		"payload {http://www.w3.org/2005/Atom}entry",
		"title Neat & tidy",
		"child title Neat & tidy",
		"child id urn:uuid:1",
		"xml <item xmlns='http://jabber.org/protocol/pubsub#event' id='lib-1'><entry xmlns='http://www.w3.org/2005/Atom'><title>Neat &amp; tidy</title><id>urn:uuid:1</id></entry></item>",
		"retracted lib-1",
	}
	if got := readLines(t, out); !slices.Equal(got, want) {
		t.Errorf("the Libervia hook wrote:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// What only Libervia's live backend has fails the run, saying so.
	bridge := e.write("libervia_bridge.py", "def hook(host, client, item):\n    host.bridge.psItemsGet('', 'node')\n")
	e.hook(t, hookctl.Hook{Key: hookctl.Key{Service: e.srv.PubSub, Node: "libervia-bridge", Type: hookctl.TypePythonFile, Arg: bridge}})
	e.publish("libervia-bridge", "b1", entry("x"))
	r := e.b.waitRuns(api.RunQuery{Node: "libervia-bridge"}, 1)[0]
	if want := "NotLiberviaError: host.bridge: hookctl's host is not Libervia's backend"; r.Outcome != "failed" || !strings.Contains(r.Error, want) {
		t.Errorf("run %+v, want failed with %q", r, want)
	}
}
