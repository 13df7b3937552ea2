package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/alert"
	"hookctl.dev/hookctl/internal/suggest"
	"hookctl.dev/hookctl/rules"
)

// Alerts declares where the backend sends alerts (hook failures, a
// session down, catch-up gaps, hooks files that stop applying) and how
// often. No sink: no alerts.
type Alerts struct {
	// Window coalesces: after the first message of a subject (a hook, a
	// profile, …), its further failures are summed up in at most one
	// message per window (default 5m).
	Window hookctl.Duration `yaml:"window"`
	// SessionDownAfter is how long a profile's session must be down before
	// it is alerted (default 2m): short reconnects are not news.
	SessionDownAfter hookctl.Duration `yaml:"session_down_after"`
	// Sinks receive the alerts, by name.
	Sinks map[string]AlertSink `yaml:"sinks"`
}

// AlertSink is one destination: exactly one of XMPP or Webhook.
type AlertSink struct {
	XMPP    *XMPPAlertSink    `yaml:"xmpp"`
	Webhook *WebhookAlertSink `yaml:"webhook"`
	// On are the alert kinds sent here (default: every kind).
	On []alert.Kind `yaml:"on"`
}

// XMPPAlertSink sends each alert as a chat message to To, through the
// session of Profile (no connection of its own).
type XMPPAlertSink struct {
	Profile string   `yaml:"profile"`
	To      []string `yaml:"to"`
}

// WebhookAlertSink POSTs each alert as JSON to URL.
type WebhookAlertSink struct {
	URL string `yaml:"url"`
	// Headers are sent with each request; values may name declared
	// secrets as ${NAME}, read at each send and never shown.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds each request (default 10s).
	Timeout hookctl.Duration `yaml:"timeout"`
	// Insecure allows plain http:// to a non-loopback host.
	Insecure bool `yaml:"insecure"`
}

// Alert defaults and limits.
const (
	DefaultAlertWindow      = 5 * time.Minute
	DefaultSessionDownAfter = 2 * time.Minute
	DefaultWebhookTimeout   = 10 * time.Second
	maxAlertSinks           = 16
	maxAlertJIDs            = 32
	maxWebhookURL           = 2048
	maxWebhookHeaders       = 32
	maxHeaderValue          = 8 << 10
)

// AlertWindow is alerts.window, defaulted.
func (a Alerts) AlertWindow() time.Duration {
	if a.Window == 0 {
		return DefaultAlertWindow
	}
	return time.Duration(a.Window)
}

// DownAfter is alerts.session_down_after, defaulted.
func (a Alerts) DownAfter() time.Duration {
	if a.SessionDownAfter == 0 {
		return DefaultSessionDownAfter
	}
	return time.Duration(a.SessionDownAfter)
}

// RequestTimeout is the webhook's timeout, defaulted.
func (w WebhookAlertSink) RequestTimeout() time.Duration {
	if w.Timeout == 0 {
		return DefaultWebhookTimeout
	}
	return time.Duration(w.Timeout)
}

// checkAlerts validates the alerts section against the rest of the config
// (profiles, secrets), each error as "FILE:LINE:COL: FIELD: MESSAGE" at
// the value at fault. data is the file, read again for positions.
func (c *Config) checkAlerts(path string, data []byte) error {
	if c.Alerts.Window == 0 && c.Alerts.SessionDownAfter == 0 && c.Alerts.Sinks == nil {
		return nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Kind == 0 {
		return nil // reported by decodeFile
	}
	p := positions{path: path}
	root := child(doc.Content[0], "alerts")
	a := c.Alerts
	p.duration(root, "window", "alerts.window", a.Window, time.Second, 24*time.Hour)
	p.duration(root, "session_down_after", "alerts.session_down_after", a.SessionDownAfter, time.Second, 24*time.Hour)
	sinks := child(root, "sinks")
	if len(a.Sinks) > maxAlertSinks {
		p.bad(sinks, "alerts.sinks", "%d sinks: at most %d", len(a.Sinks), maxAlertSinks)
	}
	for _, name := range slices.Sorted(maps.Keys(a.Sinks)) {
		c.checkSink(&p, keyOf(sinks, name), child(sinks, name), name, a.Sinks[name])
	}
	return errors.Join(p.errs...)
}

func (c *Config) checkSink(p *positions, key, n *yaml.Node, name string, s AlertSink) {
	field := "alerts.sinks." + name
	if !validSinkName(name) {
		field = "alerts.sinks." + quoteClip(name)
		p.bad(key, field, "a sink name is 1 to 64 letters, digits, '_', '-' or '.'")
	}
	switch {
	case (s.XMPP == nil) == (s.Webhook == nil):
		p.bad(key, field, "needs exactly one of xmpp or webhook")
	case s.XMPP != nil:
		c.checkXMPPSink(p, child(n, "xmpp"), field+".xmpp", *s.XMPP)
	default:
		c.checkWebhook(p, child(n, "webhook"), field+".webhook", *s.Webhook)
	}
	on := child(n, "on")
	if on != nil && len(s.On) == 0 {
		p.bad(on, field+".on", "an empty list sends nothing: list alert kinds, or leave on out for every kind")
	}
	seen := map[alert.Kind]bool{}
	for i, k := range s.On {
		f := fmt.Sprintf("%s.on[%d]", field, i)
		switch {
		case !slices.Contains(alert.Kinds, k):
			p.bad(item(on, i), f, "unknown alert kind %s (want one of %s)", quoteClip(string(k)), kindList())
		case seen[k]:
			p.bad(item(on, i), f, "%q is listed twice", k)
		}
		seen[k] = true
	}
}

func (c *Config) checkXMPPSink(p *positions, n *yaml.Node, field string, s XMPPAlertSink) {
	prof := child(n, "profile")
	if _, ok := c.Profiles[s.Profile]; !ok {
		names := slices.Sorted(maps.Keys(c.Profiles))
		msg := fmt.Sprintf("unknown profile %s", quoteClip(s.Profile))
		if s.Profile == "" {
			msg = "missing: the profile whose session sends the messages"
			prof = n
		}
		if hint := suggest.Closest(s.Profile, names); hint != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", hint)
		} else if len(names) > 0 {
			msg += fmt.Sprintf(" (profiles: %s)", strings.Join(names, ", "))
		} else {
			msg += " (this config declares no profile)"
		}
		p.bad(prof, field+".profile", "%s", msg)
	}
	to := child(n, "to")
	switch {
	case len(s.To) == 0:
		p.bad(cmpNode(to, n), field+".to", "needs at least one JID to send to")
	case len(s.To) > maxAlertJIDs:
		p.bad(to, field+".to", "%d JIDs: at most %d", len(s.To), maxAlertJIDs)
	}
	seen := map[string]int{}
	for i, s := range s.To {
		f := fmt.Sprintf("%s.to[%d]", field, i)
		j, err := jid.Parse(s)
		switch {
		case err != nil:
			p.bad(item(to, i), f, "malformed JID %s: %v", quoteClip(s), err)
			continue
		case j.Localpart() == "":
			p.bad(item(to, i), f, "%s has no user part (want user@domain)", quoteClip(s))
			continue
		}
		if first, ok := seen[j.String()]; ok {
			p.bad(item(to, i), f, "%s is the same JID as to[%d]", quoteClip(s), first)
		}
		seen[j.String()] = i
	}
}

func (c *Config) checkWebhook(p *positions, n *yaml.Node, field string, w WebhookAlertSink) {
	un := cmpNode(child(n, "url"), n)
	if err := checkWebhookURL(w.URL, w.Insecure); err != nil {
		p.bad(un, field+".url", "%v", err)
	}
	p.duration(n, "timeout", field+".timeout", w.Timeout, 100*time.Millisecond, time.Minute)
	hn := child(n, "headers")
	if len(w.Headers) > maxWebhookHeaders {
		p.bad(hn, field+".headers", "%d headers: at most %d", len(w.Headers), maxWebhookHeaders)
	}
	for _, name := range slices.Sorted(maps.Keys(w.Headers)) {
		f, vn, v := field+".headers."+name, child(hn, name), w.Headers[name]
		if !rules.ValidHeaderName(name) {
			f = field + ".headers." + quoteClip(name)
			p.bad(keyOf(hn, name), f, "%s is not a valid header name", quoteClip(name))
		}
		if len(v) > maxHeaderValue {
			p.bad(vn, f, "value of %d bytes: at most %d", len(v), maxHeaderValue)
			continue
		}
		_, err := ExpandSecrets(v, func(s string) (string, error) {
			if _, ok := c.SecretDecls[s]; !ok {
				return "", fmt.Errorf("${%s} names no declared secret (declare it under secrets:)", s)
			}
			return "", nil
		})
		if err != nil {
			p.bad(vn, f, "%v", err)
		}
	}
}

// checkWebhookURL accepts an absolute http(s) URL without credentials (they
// would show wherever the URL does: put them in a header from a secret);
// plain http only to a loopback host unless insecure.
func checkWebhookURL(s string, insecure bool) error {
	if s == "" {
		return errors.New("missing")
	}
	if len(s) > maxWebhookURL {
		return fmt.Errorf("URL of %d bytes: at most %d", len(s), maxWebhookURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("bad URL: %v", strings.TrimPrefix(err.Error(), fmt.Sprintf("parse %q: ", s)))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: want an http:// or https:// URL", s)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q has no host", s)
	case strings.HasSuffix(u.Host, ":"):
		return fmt.Errorf("%q: empty port", s)
	case u.User != nil:
		return fmt.Errorf("%q: credentials in the URL would show in logs and status: send them in a header naming a secret (${NAME})", hookctl.RedactURLCredentials(s))
	}
	if port := u.Port(); port != "" {
		if err := checkHostPortNumber(net.JoinHostPort(u.Hostname(), port)); err != nil || port == "0" {
			return fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
		}
	}
	if u.Scheme == "http" && !insecure && !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("%q is plain http to another host: alerts and their headers would cross the network in clear; "+
			"use https, or insecure: true to mean it", s)
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// quoteClip quotes a value for an error, cut to its first 64 bytes: a
// mistake of a megabyte is not repeated back whole.
func quoteClip(s string) string {
	if len(s) <= 64 {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q… (%d bytes)", strings.ToValidUTF8(s[:64], ""), len(s))
}

func validSinkName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func kindList() string {
	s := make([]string, len(alert.Kinds))
	for i, k := range alert.Kinds {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// positions collects errors at YAML nodes.
type positions struct {
	path string
	errs []error
}

// bad records an error at n (or without a position when n is nil).
func (p *positions) bad(n *yaml.Node, field, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if n == nil {
		p.errs = append(p.errs, fmt.Errorf("%s: %s: %s", p.path, field, msg))
		return
	}
	p.errs = append(p.errs, fmt.Errorf("%s:%d:%d: %s: %s", p.path, n.Line, n.Column, field, msg))
}

// duration checks an optional duration (0: the default) against its range.
func (p *positions) duration(parent *yaml.Node, key, field string, d hookctl.Duration, lo, hi time.Duration) {
	if d != 0 && (time.Duration(d) < lo || time.Duration(d) > hi) {
		p.bad(child(parent, key), field, "%v is out of range (%v to %v)", time.Duration(d), lo, hi)
	}
}

// child returns the value of key in mapping n, or nil.
func child(n *yaml.Node, key string) *yaml.Node {
	if k := keyOf(n, key); k != nil {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i] == k {
				return n.Content[i+1]
			}
		}
	}
	return nil
}

// keyOf returns the key node of key in mapping n, or nil.
func keyOf(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

// item returns the ith element of sequence n, or n.
func item(n *yaml.Node, i int) *yaml.Node {
	if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i]
	}
	return n
}

func cmpNode(n, fallback *yaml.Node) *yaml.Node {
	if n != nil {
		return n
	}
	return fallback
}
