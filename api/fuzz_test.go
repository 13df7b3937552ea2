package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"hookctl.dev/hookctl/api"
)

// FuzzDecodeRequest sends arbitrary bodies to every POST endpoint: the
// answer is never a 5xx, always JSON, and a refused request changes
// nothing in the registry.
// Run: go test ./api -run '^$' -fuzz FuzzDecodeRequest -fuzztime 30s
func FuzzDecodeRequest(f *testing.F) {
	paths := []string{"/v1/hooks", "/v1/hooks/remove", "/v1/batch", "/v1/pubsub"}
	seeds := []string{
		`{"profile":"default","node":"n","type":"exec","arg":"/bin/true","persistent":true}`,
		`{"profile":"default","service":"bot@localhost","node":"n"}`,
		`{"revision":1,"create":[{"profile":"default","node":"x","type":"expr","arg":"1"}]}`,
		`{"op":"publish","profile":"default","node":"n","payload":"<x/>"}`,
		`{"profile":"default","node":"n","type":"exec","arg":"/bin/true","timeout":"soon"}`,
		`[{"profile":"default"}]`, `{"a":` + string(bytes.Repeat([]byte("["), 5000)), "\xff\xfe", ``, `null`, `{}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	b := &testBackend{Store: openStore(f)}
	h := api.NewServer(api.ServerOptions{Backend: b}).Handler()
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		path := paths[int(which)%len(paths)]
		before := b.Revision()
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("POST %s %q: status %d: %s", path, body, w.Code, w.Body)
		}
		var v map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("POST %s %q: answer is not JSON: %q", path, body, w.Body)
		}
		if w.Code >= 400 {
			if _, ok := v["error"]; !ok {
				t.Fatalf("POST %s: %d without an error object: %s", path, w.Code, w.Body)
			}
			if after := b.Revision(); after != before {
				t.Fatalf("POST %s refused (%d) but the revision moved %d → %d", path, w.Code, before, after)
			}
		}
	})
}
