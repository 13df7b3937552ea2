package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Messenger sends a chat message: a profile's XMPP session.
type Messenger interface {
	SendMessage(ctx context.Context, to, body string) error
}

// XMPP sends each message's text to every JID of To through Session (the
// profile's own connection: no other is opened). A session that is down
// fails the send; the message is not kept for later.
type XMPP struct {
	Session Messenger
	To      []string
}

// Send sends m to each recipient, all within ctx.
func (x XMPP) Send(ctx context.Context, m Message) error {
	var errs []error
	for _, to := range x.To {
		if err := x.Session.SendMessage(ctx, to, m.Text); err != nil {
			errs = append(errs, fmt.Errorf("to %s: %w", to, err))
		}
	}
	return errors.Join(errs...)
}

// Webhook POSTs each message as JSON (Message's fields) to URL.
type Webhook struct {
	URL string
	// Headers are sent with each request, their values passed through
	// Expand (the ${NAME} secrets) at each send.
	Headers map[string]string
	Expand  func(string) (string, error)
	// Client sends the requests (default: one that follows no redirect).
	Client *http.Client
}

// maxWebhookReply bounds what is read of an answer (then dropped).
const maxWebhookReply = 64 << 10

// Send posts m within ctx; an answer other than 2xx is an error.
func (w Webhook) Send(ctx context.Context, m Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hookctl-alerts")
	for name, v := range w.Headers {
		if w.Expand != nil {
			if v, err = w.Expand(v); err != nil {
				return fmt.Errorf("header %s: %w", name, err)
			}
		}
		req.Header.Set(name, v)
	}
	client := w.Client
	if client == nil {
		client = defaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookReply))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// defaultClient follows no redirect (a redirect would carry the headers,
// secrets included, elsewhere) and bounds each request even when the
// caller's context has no deadline.
var defaultClient = &http.Client{
	Timeout:       time.Minute,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
