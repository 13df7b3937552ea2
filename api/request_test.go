package api_test

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

// A malformed request gets a clear 4xx JSON error and changes nothing.
func TestMalformedRequests(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	// One hook that the remove cases below would delete if they went
	// through.
	if _, err := e.client.Create(ctx, hook("n", "/bin/true")); err != nil {
		t.Fatal(err)
	}
	before, rev, err := e.backend.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	const valid = `{"profile":"default","node":"new","type":"exec","arg":"/bin/true","persistent":true}`
	const json = "application/json"

	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		code, msg                       string // msg: a substring of the message
	}{
		{"truncated", "POST", "/v1/hooks", json, valid[:30], 400, "invalid", "unexpected EOF"},
		{"unknown field", "POST", "/v1/hooks", json, `{"profile":"default","node":"new","type":"exec","arg":"/bin/true","bogus":1}`, 400, "invalid", `unknown field "bogus"`},
		{"trailing value", "POST", "/v1/hooks", json, valid + ` {}`, 400, "invalid", "after the JSON value"},
		{"trailing garbage", "POST", "/v1/hooks", json, valid + `x`, 400, "invalid", "after the JSON value"},
		{"empty body", "POST", "/v1/hooks", json, ``, 400, "invalid", "empty"},
		{"wrong type", "POST", "/v1/hooks", json, `{"profile":1}`, 400, "invalid", "profile"},
		{"bad duration", "POST", "/v1/hooks", json, `{"profile":"default","node":"new","type":"exec","arg":"/bin/true","timeout":"soon"}`, 400, "invalid", "bad duration"},
		{"not json", "POST", "/v1/hooks", "text/plain", valid, 400, "invalid", "application/json"},
		{"remove unknown field", "POST", "/v1/hooks/remove", json, `{"profile":"default","service":"bot@localhost","node":"n","force":true}`, 400, "invalid", `unknown field "force"`},
		{"remove array", "POST", "/v1/hooks/remove", json, `[{"profile":"default","service":"bot@localhost","node":"n"}]`, 400, "invalid", "cannot unmarshal array"},
		{"batch nested unknown field", "POST", "/v1/batch", json, `{"revision":` + itoa(rev) + `,"create":[{"profile":"default","node":"new","type":"exec","arg":"/x","nmae":"a"}]}`, 400, "invalid", `unknown field "nmae"`},
		{"batch delete and garbage", "POST", "/v1/batch", json, `{"revision":` + itoa(rev) + `,"delete":[{"profile":"default","service":"bot@localhost","node":"n","type":"exec","arg":"/bin/true"}]}]`, 400, "invalid", "after the JSON value"},
		{"pubsub unknown field", "POST", "/v1/pubsub", json, `{"op":"publish","profile":"default","node":"n","paylod":"<x/>"}`, 400, "invalid", `unknown field "paylod"`},
		{"unknown query parameter", "GET", "/v1/hooks?profil=default", "", "", 400, "invalid", `unknown query parameter "profil"`},
		{"repeated query parameter", "GET", "/v1/hooks?profile=a&profile=b", "", "", 400, "invalid", `"profile" given 2 times`},
		{"bad limit", "GET", "/v1/runs?limit=-1", "", "", 400, "invalid", "limit"},
		{"bad failed", "GET", "/v1/runs?failed=maybe", "", "", 400, "invalid", "failed"},
		{"wrong method", "GET", "/v1/batch", "", "", 405, "method_not_allowed", "method GET not allowed on /v1/batch"},
		{"delete on hooks", "DELETE", "/v1/hooks", "", "", 405, "method_not_allowed", "allowed: GET, POST"},
		{"unknown path", "GET", "/v1/nope", "", "", 404, "not_found", "/v1/nope"},
		{"unversioned path", "GET", "/hooks", "", "", 404, "not_found", "/hooks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" || tt.method == "POST" {
				body = strings.NewReader(tt.body)
			}
			r := e.raw(t, tt.method, tt.path, tt.ctype, body)
			if r.status != tt.status || r.code != tt.code || !strings.Contains(r.message, tt.msg) {
				t.Errorf("got %d %s %q, want %d %s with %q", r.status, r.code, r.message, tt.status, tt.code, tt.msg)
			}
		})
	}
	if got := e.raw(t, "PUT", "/v1/batch", "", nil).header.Get("Allow"); got != "POST" {
		t.Errorf("Allow on /v1/batch = %q, want POST", got)
	}

	after, rev2, err := e.backend.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rev2 != rev {
		t.Errorf("revision moved from %d to %d", rev, rev2)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("registry changed (-before +after):\n%s", diff)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// Bodies over the limit are refused with 413 too_large, whether their
// length is announced or not, and change nothing.
func TestOversizedBodies(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	_, rev, err := e.backend.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}

	// Through the client: a batch of about MaxBatchBody + 1 MiB, refused
	// by the client before sending (the server's own refusal is the
	// chunked case below).
	big := strings.Repeat("a", 1<<20)
	var batch hookctl.Batch
	batch.Revision = rev
	for i := range api.MaxBatchBody>>20 + 1 {
		h := hook("n", "/bin/"+strconv.Itoa(i))
		h.Args = []string{big}
		batch.Create = append(batch.Create, h)
	}
	_, err = e.client.Apply(ctx, batch)
	if !errors.Is(err, api.ErrTooLarge) || !errors.Is(err, hookctl.ErrInvalid) {
		t.Fatalf("Apply of a batch over MaxBatchBody: %v, want ErrTooLarge", err)
	}
	// A batch under the limit with hooks over MaxBody each is fine: the
	// batch limit is the larger one.
	// (Each hook within the rules' limits: 5 args of 10 KiB, 5 MiB in all.)
	var fits []hookctl.Hook
	for i := range 100 {
		h := hook("n", "/bin/fits"+strconv.Itoa(i))
		h.Args = slices.Repeat([]string{strings.Repeat("a", 10<<10)}, 5)
		fits = append(fits, h)
	}
	if _, err := e.client.Apply(ctx, hookctl.Batch{Revision: rev, Create: fits}); err != nil {
		t.Fatalf("Apply of a 5 MiB batch: %v", err)
	}
	_, rev, _ = e.backend.List(ctx, "")

	// One hook over MaxBody, announced length.
	h := hook("n", "/bin/true")
	h.Args = []string{strings.Repeat("b", api.MaxBody)}
	if _, err := e.client.Create(ctx, h); !errors.Is(err, api.ErrTooLarge) {
		t.Errorf("Create of a hook over MaxBody: %v, want ErrTooLarge", err)
	}

	// Unannounced length (chunked): the server stops reading at the limit.
	body := io.MultiReader(strings.NewReader(`{"revision":0,"create":[{"arg":"`), &repeatReader{b: 'c', n: api.MaxBatchBody}, strings.NewReader(`"}]}`))
	r := e.raw(t, "POST", "/v1/batch", "application/json", body)
	if r.status != 413 || r.code != api.CodeTooLarge {
		t.Errorf("chunked oversized batch: %d %s %q, want 413 too_large", r.status, r.code, r.message)
	}

	hooks, rev2, err := e.backend.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rev2 != rev || len(hooks) != 100 {
		t.Errorf("after refused requests: %d hooks at revision %d, want 100 at %d", len(hooks), rev2, rev)
	}
	// The server still answers after cutting connections short.
	if err := e.client.Ping(ctx); err != nil {
		t.Errorf("Ping after oversized requests: %v", err)
	}
}

// repeatReader yields n copies of b, without holding them in memory.
type repeatReader struct {
	b byte
	n int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := min(len(p), r.n)
	copy(p[:k], bytes.Repeat([]byte{r.b}, k))
	r.n -= k
	return k, nil
}

// CheckBatchSize, which validate and the client call, agrees with the
// server's limit: 100,000 small hooks fit, 34 MB of hooks do not.
func TestCheckBatchSize(t *testing.T) {
	var small hookctl.Batch
	for i := range 100000 {
		small.Create = append(small.Create, hookctl.Hook{Key: hookctl.Key{Profile: "default", Node: "n" + strconv.Itoa(i), Type: hookctl.TypeExpr, Arg: "true"}})
	}
	if err := api.CheckBatchSize(small); err != nil {
		t.Errorf("100,000 small hooks: %v", err)
	}
	var big hookctl.Batch
	arg := strings.Repeat("x", 16<<10)
	for i := range api.MaxBatchBody/(16<<10) + 10 {
		big.Create = append(big.Create, hookctl.Hook{Key: hookctl.Key{Node: "n" + strconv.Itoa(i), Type: hookctl.TypeExpr, Arg: arg}})
	}
	if err := api.CheckBatchSize(big); !errors.Is(err, api.ErrTooLarge) || !strings.Contains(err.Error(), "apply them in parts") {
		t.Errorf("a batch over MaxBatchBody: %v, want ErrTooLarge", err)
	}
}
