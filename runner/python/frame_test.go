package python

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The hand-written run frame decodes to what encoding/json's would, for
// strings that need escaping, invalid UTF-8 and an empty item.
func TestAppendRunFrameMatchesJSON(t *testing.T) {
	odd := []string{
		"", "plain", `quote " backslash \ slash /`, "nl\n cr\r tab\t nul\x00 bell\x07 del\x7f",
		"<item id='a&amp;b'>é ☃ 𝄞</item>", "bad \xff\xfe utf8 \xe2\x82", "sep \u2028 \u2029 end",
	}
	for _, s := range odd {
		fr := runFrame{
			Op:     "run",
			Client: clientFrame{Profile: s, JID: "a@b/" + s},
			Event: eventFrame{Service: s, Node: "n" + s, Kind: "publish", ItemID: s,
				Publisher: s, Catchup: len(s)%2 == 0, Received: "2026-12-02T04:48:59.123Z"},
			ItemXML: s,
		}
		line := appendRunFrame(nil, &fr)
		if !strings.HasSuffix(string(line), "}\n") || strings.Count(string(line), "\n") != 1 {
			t.Fatalf("%q: not one line: %q", s, line)
		}
		var got, want map[string]any
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%q: %v in %q", s, err, line)
		}
		std, _ := json.Marshal(&fr)
		if err := json.Unmarshal(std, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %v\nwant %v", s, got, want)
		}
	}
}
