package registry

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOwnSubscriptionsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := NodeRef{"p1", "pubsub.localhost", "a"}
	b := NodeRef{"p1", "bot@localhost", "b"}
	other := NodeRef{"p2", "pubsub.localhost", "a"}
	if got, err := s.OwnSubscriptions("p1"); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %v, %v", got, err)
	}
	if err := s.AddOwnSubscriptions(a, b, other, a); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.OwnSubscriptions("p1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]NodeRef{b, a}, got); diff != "" {
		t.Fatalf("after reopen (-want +got):\n%s", diff)
	}
	if err := s.RemoveOwnSubscriptions(b, NodeRef{"p1", "x", "never"}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.OwnSubscriptions("p1")
	if diff := cmp.Diff([]NodeRef{a}, got); diff != "" {
		t.Fatalf("after remove (-want +got):\n%s", diff)
	}
	got, _ = s.OwnSubscriptions("p2")
	if diff := cmp.Diff([]NodeRef{other}, got); diff != "" {
		t.Fatalf("other profile (-want +got):\n%s", diff)
	}
}

func TestOwnSubscriptionsAfterClose(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.AddOwnSubscriptions(NodeRef{"p", "s", "n"}); err == nil {
		t.Fatal("add after close: no error")
	}
	if _, err := s.OwnSubscriptions("p"); err == nil {
		t.Fatal("read after close: no error")
	}
}
