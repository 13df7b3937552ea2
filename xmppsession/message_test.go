package xmppsession

import (
	"context"
	"errors"
	"testing"

	"hookctl.dev/hookctl"
)

// Without a connection a message fails at once as unavailable (the
// alerts count it, and never wait for a reconnect); a bad JID is invalid.
func TestSendMessageRefusals(t *testing.T) {
	s, err := New(Config{Profile: "p", JID: "bot@localhost", Server: "127.0.0.1:1", TLS: TLSNone})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMessage(context.Background(), "ops@localhost", "hi"); !errors.Is(err, hookctl.ErrUnavailable) {
		t.Errorf("not connected: %v, want ErrUnavailable", err)
	}
	if err := s.SendMessage(context.Background(), "@@", "hi"); !errors.Is(err, hookctl.ErrInvalid) {
		t.Errorf("bad JID: %v, want ErrInvalid", err)
	}
}
