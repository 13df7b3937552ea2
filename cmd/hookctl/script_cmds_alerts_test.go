package main

import (
	"context"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// alertsink FILE: an HTTP server on 127.0.0.1 (until the script ends)
// that appends each request's Authorization header and body, one line
// each, to FILE; sets $ALERT_URL.
func cmdAlertSink(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: alertsink FILE")
	}
	path := ts.MkAbs(args[0])
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		mu.Lock()
		defer mu.Unlock()
		appendLine(path, "auth: "+r.Header.Get("Authorization")+"\n"+strings.TrimSpace(string(b)))
	}))
	ts.Defer(srv.Close)
	ts.Setenv("ALERT_URL", srv.URL)
}

// xmppinbox USER FILE: log USER (password "pw") in to the script's
// Prosody with mellium alone, available, and append the body of each chat
// message it receives to FILE, one line each, until the script ends.
func cmdXMPPInbox(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: xmppinbox USER FILE")
	}
	path := ts.MkAbs(args[1])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	origin := jid.MustParse(args[0] + "@localhost/inbox")
	nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", ts.Getenv("XMPP_ADDR"))
	ts.Check(err)
	xs, err := xmpp.NewSession(ctx, origin.Domain(), origin, nc, xmpp.Secure, xmpp.NewNegotiator(
		func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: []xmpp.StreamFeature{xmpp.SASL("", "pw", sasl.Plain), xmpp.BindResource()}}
		}))
	if err != nil {
		nc.Close()
		ts.Fatalf("xmppinbox: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		xs.Serve(xmpp.HandlerFunc(func(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			if start.Name.Local == "message" && attr(start.Attr, "type") == "chat" {
				appendLine(path, bodyText(r))
			}
			return nil
		}))
	}()
	ts.Defer(func() {
		nc.SetDeadline(time.Now().Add(time.Second))
		xs.Close()
		nc.Close()
		<-done
	})
	// Available: chat to the bare JID reaches only available resources.
	ts.Check(xs.Send(ctx, stanza.Presence{}.Wrap(nil)))
}

// bodyText is the text of the <body> child among a message's inner tokens.
func bodyText(r xml.TokenReader) string {
	var b strings.Builder
	depth, in := 0, false
	for {
		tok, err := r.Token()
		if err != nil {
			return b.String()
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			in = depth == 1 && tok.Name.Local == "body"
		case xml.EndElement:
			depth--
			in = false
		case xml.CharData:
			if in {
				b.Write(tok)
			}
		}
	}
}

func attr(attrs []xml.Attr, local string) string {
	for _, a := range attrs {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

func appendLine(path, line string) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteString(line + "\n")
}
