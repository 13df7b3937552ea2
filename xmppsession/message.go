package xmppsession

import (
	"context"
	"encoding/xml"
	"fmt"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"hookctl.dev/hookctl"
)

// SendMessage sends a chat message with body to the JID to, on the live
// connection (no other is opened): the alerts' XMPP channel. It fails
// with hookctl.ErrUnavailable while the session is down; ctx bounds the
// write (RequestTimeout when it has no deadline). Characters that XML
// cannot carry are replaced by the encoder.
func (s *Session) SendMessage(ctx context.Context, to, body string) error {
	what := "sending a message to " + to
	j, err := jid.Parse(to)
	if err != nil {
		return fmt.Errorf("%s: %w: %v", what, hookctl.ErrInvalid, err)
	}
	c, rctx, done, err := s.current(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer done()
	msg := stanza.Message{To: j, Type: stanza.ChatMessage}
	err = c.xs.Send(rctx, msg.Wrap(elem("", "body", xmlstream.Token(xml.CharData(body)))))
	return s.reqErr(rctx, c, what, err)
}
