package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/api"
)

func TestRegistryRoundTrip(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	c := e.client

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	hooks, rev0, err := c.List(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if hooks == nil || len(hooks) != 0 {
		t.Fatalf("List on an empty registry = %#v, want an empty, non-nil list", hooks)
	}

	created, err := c.Create(ctx, hook("urn:xmpp:microblog:0", "/bin/true"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if created.Service != "bot@localhost" || created.Created.IsZero() {
		t.Errorf("Create returned %+v, want the stored hook (own PEP service, Created set)", created)
	}

	// The same hook again: 409 duplicate, the registry's message kept.
	_, err = c.Create(ctx, hook("urn:xmpp:microblog:0", "/bin/true"))
	if !errors.Is(err, hookctl.ErrDuplicate) {
		t.Fatalf("second Create: %v, want ErrDuplicate", err)
	}
	if ae := apiError(t, err); ae.Status != http.StatusConflict || ae.Code != api.CodeDuplicate ||
		!strings.HasPrefix(err.Error(), "hook already exists: default bot@localhost urn:xmpp:microblog:0 exec") {
		t.Errorf("duplicate error = %d %s %q", ae.Status, ae.Code, err)
	}

	// Unknown profile: the registry's not found.
	h := hook("n", "/bin/true")
	h.Profile = "nobody"
	if _, err := c.Create(ctx, h); !errors.Is(err, hookctl.ErrNotFound) || apiError(t, err).Status != 404 {
		t.Errorf("Create for an unknown profile: %v, want ErrNotFound (404)", err)
	}
	// Invalid hook: the registry's invalid.
	if _, err := c.Create(ctx, hook("", "/bin/true")); !errors.Is(err, hookctl.ErrInvalid) || apiError(t, err).Status != 400 {
		t.Errorf("Create with an empty node: %v, want ErrInvalid (400)", err)
	}

	hooks, rev1, err := c.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rev1 <= rev0 {
		t.Errorf("revision after Create = %d, want above %d", rev1, rev0)
	}
	if diff := cmp.Diff([]hookctl.Hook{created}, hooks); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}

	// A batch against the current revision applies; the same batch again
	// is stale: 409 with ErrStale on the client side.
	upd := created
	upd.Name = "renamed"
	batch := hookctl.Batch{Revision: rev1, Create: []hookctl.Hook{hook("n2", "/bin/false")}, Update: []hookctl.Hook{upd}}
	rev2, err := c.Apply(ctx, batch)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if _, rev, _ := e.backend.List(ctx, ""); rev != rev2 {
		t.Errorf("Apply returned revision %d, registry is at %d", rev2, rev)
	}
	_, err = c.Apply(ctx, batch)
	if !errors.Is(err, hookctl.ErrStale) {
		t.Fatalf("stale Apply: %v, want ErrStale", err)
	}
	if ae := apiError(t, err); ae.Status != http.StatusConflict || ae.Code != api.CodeStale {
		t.Errorf("stale error = %d %s", ae.Status, ae.Code)
	}

	n, err := c.Remove(ctx, hookctl.Match{Profile: "default", Service: "bot@localhost", Node: "n2"})
	if err != nil || n != 1 {
		t.Fatalf("Remove = %d, %v; want 1, nil", n, err)
	}
	hooks, _, err = c.List(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(hooks) != 1 || hooks[0].Name != "renamed" {
		t.Errorf("List after batch and remove = %+v, want the renamed hook alone", hooks)
	}

	// The remove answer carries the revision after the removal.
	r := e.raw(t, "POST", "/v1/hooks/remove", "application/json",
		strings.NewReader(`{"profile":"default","service":"bot@localhost","node":"urn:xmpp:microblog:0"}`))
	_, rev, _ := e.backend.List(ctx, "")
	if want := fmt.Sprintf(`{"removed":1,"revision":%d}`, rev); r.status != 200 || strings.TrimSpace(r.body) != want {
		t.Errorf("remove answer = %d %s, want 200 %s", r.status, r.body, want)
	}
}

func TestStatusRunsPubSub(t *testing.T) {
	e := start(t)
	ctx := t.Context()
	if _, err := e.client.Create(ctx, hook("n", "/bin/true")); err != nil {
		t.Fatal(err)
	}
	st, err := e.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Hooks != 1 || st.Version != "test" || len(st.Profiles) != 1 || st.Profiles[0].State != "connected" {
		t.Errorf("Status = %+v", st)
	}

	q := api.RunQuery{Profile: "default", Node: "n o/de&x=1", Hook: "rebuild", FailedOnly: true, Limit: 7}
	runs, err := e.client.Runs(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(q, e.backend.runQuery); diff != "" {
		t.Errorf("query the backend saw (-sent +seen):\n%s", diff)
	}
	if len(runs) != 2 || runs[0].ID != 2 || runs[0].Outcome != "failed" || runs[0].Hook.Node != q.Node {
		t.Errorf("Runs = %+v", runs)
	}

	notify := false
	req := api.PubSubRequest{Op: api.OpRetract, Profile: "default", Node: "n", ItemID: "it1", Notify: &notify}
	res, err := e.client.PubSub(ctx, req)
	if err != nil || res.ItemID != "it1" {
		t.Errorf("PubSub = %+v, %v", res, err)
	}
	if diff := cmp.Diff(req, e.backend.pubsubReq); diff != "" {
		t.Errorf("request the backend saw (-sent +seen):\n%s", diff)
	}
}

// Every error the backend can return travels as its code and comes back as
// an error wrapping the same sentinel, with the backend's message.
func TestErrorCodesRoundTrip(t *testing.T) {
	e := start(t)
	tests := []struct {
		err      error
		status   int
		code     string
		sentinel error // nil: none
	}{
		{fmt.Errorf("%w: payload is not XML", hookctl.ErrInvalid), 400, api.CodeInvalid, hookctl.ErrInvalid},
		{fmt.Errorf("%w: a b c", hookctl.ErrDuplicate), 409, api.CodeDuplicate, hookctl.ErrDuplicate},
		{fmt.Errorf("%w (revision 3, now 5)", hookctl.ErrStale), 409, api.CodeStale, hookctl.ErrStale},
		{fmt.Errorf("node %q: %w", "x", hookctl.ErrNotFound), 404, api.CodeNotFound, hookctl.ErrNotFound},
		{fmt.Errorf("%w: exec", hookctl.ErrTypeNotAllowed), 403, api.CodeTypeNotAllowed, hookctl.ErrTypeNotAllowed},
		{fmt.Errorf("profile default: %w: not connected", hookctl.ErrUnavailable), 503, api.CodeUnavailable, hookctl.ErrUnavailable},
		{context.DeadlineExceeded, 503, api.CodeUnavailable, hookctl.ErrUnavailable},
		{errors.New("disk on fire"), 500, api.CodeInternal, nil},
	}
	sentinels := []error{hookctl.ErrInvalid, hookctl.ErrDuplicate, hookctl.ErrStale, hookctl.ErrNotFound,
		hookctl.ErrTypeNotAllowed, hookctl.ErrUnavailable, api.ErrTooLarge, api.ErrUnauthorized}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			e.backend.mu.Lock()
			e.backend.pubsubErr = tt.err
			e.backend.mu.Unlock()
			_, err := e.client.PubSub(t.Context(), api.PubSubRequest{Op: api.OpPublish, Profile: "default", Node: "n"})
			ae := apiError(t, err)
			if ae.Status != tt.status || ae.Code != tt.code {
				t.Errorf("got %d %s, want %d %s", ae.Status, ae.Code, tt.status, tt.code)
			}
			if err.Error() != tt.err.Error() {
				t.Errorf("message %q, want the backend's %q", err.Error(), tt.err.Error())
			}
			for _, s := range sentinels {
				if got, want := errors.Is(err, s), s == tt.sentinel; got != want {
					t.Errorf("errors.Is(err, %q) = %v, want %v", s, got, want)
				}
			}
		})
	}
}

// A panicking backend call is a 500 answer, and the server goes on.
func TestBackendPanic(t *testing.T) {
	e := start(t)
	e.backend.mu.Lock()
	e.backend.pubsubPanic = true
	e.backend.mu.Unlock()
	_, err := e.client.PubSub(t.Context(), api.PubSubRequest{Op: api.OpPublish, Profile: "default", Node: "n"})
	if ae := apiError(t, err); ae.Status != 500 || ae.Code != api.CodeInternal || !strings.Contains(ae.Message, "backend bug") {
		t.Errorf("panicking PubSub: %d %s %q, want 500 internal", ae.Status, ae.Code, ae.Message)
	}
	if err := e.client.Ping(t.Context()); err != nil {
		t.Errorf("Ping after a panic: %v", err)
	}
}

// The codes the server makes itself map to sentinels too.
func TestErrorUnwrap(t *testing.T) {
	tests := map[string]error{
		api.CodeMethodNotAllowed: hookctl.ErrInvalid,
		api.CodeTooLarge:         api.ErrTooLarge,
		api.CodeUnauthorized:     api.ErrUnauthorized,
		api.CodeInternal:         nil,
		"some_future_code":       nil,
	}
	for code, want := range tests {
		if got := (&api.Error{Code: code}).Unwrap(); got != want {
			t.Errorf("code %s unwraps to %v, want %v", code, got, want)
		}
	}
	if !errors.Is(api.ErrTooLarge, hookctl.ErrInvalid) {
		t.Error("ErrTooLarge does not wrap ErrInvalid")
	}
}

func TestUnreachable(t *testing.T) {
	sock := socketPath(t)
	c, err := api.NewClient(api.ClientOptions{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _, err = c.List(t.Context(), "")
	want := fmt.Sprintf("cannot reach the hookctl backend at %s: is `hookctl serve` running? (dial unix %s: connect: no such file or directory)", sock, sock)
	if err == nil || err.Error() != want {
		t.Fatalf("List without a backend: %v\nwant: %s", err, want)
	}
	if !errors.Is(err, hookctl.ErrUnavailable) || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("error %v does not wrap ErrUnavailable and ENOENT", err)
	}

	// A cancelled context reads as such, not as an unreachable backend.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := c.List(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("List with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestNewClientOptions(t *testing.T) {
	for _, o := range []api.ClientOptions{
		{},
		{Server: "http://127.0.0.1:1"},      // no token
		{Server: "127.0.0.1:1", Token: "x"}, // no scheme
		{Server: "ftp://127.0.0.1:1", Token: "x"},      // wrong scheme
		{Server: "http://127.0.0.1:1?a=b", Token: "x"}, // query
	} {
		if _, err := api.NewClient(o); !errors.Is(err, hookctl.ErrInvalid) {
			t.Errorf("NewClient(%+v) = %v, want ErrInvalid", o, err)
		}
	}
	if _, err := api.NewClient(api.ClientOptions{Server: "http://127.0.0.1:1", TokenFile: "/nonexistent/token"}); err == nil {
		t.Error("NewClient with a missing token file succeeded")
	}
}
