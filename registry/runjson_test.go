package registry

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl"
)

// TestEncodeRunAsEncodingJSON: the record encodeRun writes is, byte for
// byte, the one encoding/json writes, for every field set or empty and
// strings that need escaping; a time encoding/json refuses is refused.
func TestEncodeRunAsEncodingJSON(t *testing.T) {
	var odd []string
	for c := range 0x80 {
		odd = append(odd, fmt.Sprintf("a%cb", c))
	}
	odd = append(odd, "", `"quoted" \back\ <x a='1'>&amp;</x>`, "bad \xff\xfe utf8 \xc3", "sep\u2028par\u2029end",
		"µs é 漢字 🙂", strings.Repeat("long ", 300), "\x00\x1f\x7f")
	zones := []*time.Location{time.UTC, time.FixedZone("IST", 5*3600+1800), time.FixedZone("W", -7*3600)}
	var runs []hookctl.Run
	for i, s := range odd {
		started := time.Date(2026, 12, 2, 5, 4, 3, i*1000+7, zones[i%len(zones)])
		r := hookctl.Run{ID: uint64(i), Hook: hookctl.Key{Profile: s, Service: s, Node: s, Type: hookctl.Type(s), Arg: s},
			HookName: s, Event: hookctl.EventKind(s), ItemID: s, Started: started, Outcome: s, Output: s, Error: s,
			Set: s, Manual: s}
		if i%2 == 0 {
			r.Duration, r.Queued, r.ExitCode, r.Attempt = hookctl.Duration(i)*hookctl.Duration(time.Microsecond), hookctl.Duration(i), i-3, i
			r.Catchup, r.InputTruncated = true, i%4 == 0
		}
		if i%3 != 0 {
			ev := hookctl.Event{Profile: s, Service: s, Node: s, Kind: hookctl.EventKind(s), ItemID: s, Publisher: s,
				Payload: s, ItemXML: s, Received: started.Add(-time.Second), Catchup: i%2 == 1}
			if i%3 == 2 && s != "" {
				ev.ItemXML = `<item id="x">` + s + `</item>` // the payload inside the item XML
			}
			r.Input = &ev
		}
		runs = append(runs, r)
	}
	runs = append(runs, hookctl.Run{}, benchRun(1), hookctl.Run{Input: &hookctl.Event{}})
	for i := range runs {
		got, err := encodeRun(&runs[i])
		want, werr := encodeRunJSON(&runs[i])
		if err != nil || werr != nil {
			t.Fatalf("run %d: %v / %v", i, err, werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("run %d:\n got %q\nwant %q", i, got, want)
		}
		var back hookctl.Run
		if err := decodeRun(got, &back); err != nil {
			t.Fatalf("run %d: decoding: %v", i, err)
		}
	}
	for _, bad := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 25*3600))} {
		if _, err := encodeRun(&hookctl.Run{Started: bad}); err == nil {
			t.Errorf("started %v: encoded, want encoding/json's error", bad)
		}
		if _, err := encodeRun(&hookctl.Run{Input: &hookctl.Event{Received: bad}}); err == nil {
			t.Errorf("received %v: encoded, want encoding/json's error", bad)
		}
	}
}
