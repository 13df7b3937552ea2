package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"hookctl.dev/hookctl/alert"
)

const alertsBase = `
profiles:
  main:
    jid: bot@localhost
    password_env: PW
secrets:
  ALERT_TOKEN: {env: ALERT_TOKEN}
`

func TestLoadAlerts(t *testing.T) {
	p := writeFile(t, "hookctl.yaml", alertsBase+`
alerts:
  window: 1m
  session_down_after: 30s
  sinks:
    ops:
      xmpp: {profile: main, to: [ops@localhost, oncall@localhost/phone]}
    pager:
      on: [hook_failure, files]
      webhook:
        url: https://alerts.example.org/hookctl
        headers: {Authorization: "Bearer ${ALERT_TOKEN}"}
        timeout: 5s
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Alerts
	if a.AlertWindow() != time.Minute || a.DownAfter() != 30*time.Second {
		t.Errorf("window %v, down after %v", a.AlertWindow(), a.DownAfter())
	}
	if x := a.Sinks["ops"].XMPP; x == nil || x.Profile != "main" || len(x.To) != 2 {
		t.Errorf("ops sink = %+v", a.Sinks["ops"])
	}
	w := a.Sinks["pager"]
	if w.Webhook == nil || w.Webhook.RequestTimeout() != 5*time.Second || len(w.On) != 2 || w.On[1] != alert.FilesFailing {
		t.Errorf("pager sink = %+v", w)
	}
	if (Alerts{}).AlertWindow() != DefaultAlertWindow || (Alerts{}).DownAfter() != DefaultSessionDownAfter ||
		(WebhookAlertSink{}).RequestTimeout() != DefaultWebhookTimeout {
		t.Error("defaults")
	}
}

// Each mistake is reported at its line and column, all at once.
func TestLoadAlertsErrorsHavePositions(t *testing.T) {
	cases := []struct{ alerts, want string }{
		{"  sinks:\n    ops:\n      xmpp: {profile: mian, to: [a@b]}\n",
			`bad.yaml:11:23: alerts.sinks.ops.xmpp.profile: unknown profile "mian" (did you mean "main"?)`},
		{"  sinks:\n    ops:\n      xmpp: {profile: nosuch, to: [a@b]}\n",
			`bad.yaml:11:23: alerts.sinks.ops.xmpp.profile: unknown profile "nosuch" (profiles: main)`},
		{"  sinks:\n    ops:\n      xmpp: {to: [a@b]}\n",
			`bad.yaml:11:13: alerts.sinks.ops.xmpp.profile: missing`},
		{"  sinks:\n    ops:\n      xmpp: {profile: main, to: [a@b, \"@@\"]}\n",
			`bad.yaml:11:39: alerts.sinks.ops.xmpp.to[1]: malformed JID "@@"`},
		{"  sinks:\n    ops:\n      xmpp: {profile: main, to: [localhost]}\n",
			`alerts.sinks.ops.xmpp.to[0]: "localhost" has no user part`},
		{"  sinks:\n    ops:\n      xmpp: {profile: main, to: [A@b, a@b]}\n",
			`alerts.sinks.ops.xmpp.to[1]: "a@b" is the same JID as to[0]`},
		{"  sinks:\n    ops:\n      xmpp: {profile: main, to: []}\n",
			`alerts.sinks.ops.xmpp.to: needs at least one JID`},
		{"  sinks:\n    ops: {}\n", `bad.yaml:10:5: alerts.sinks.ops: needs exactly one of xmpp or webhook`},
		{"  sinks:\n    w:\n      webhook: {url: \"ftp://x/\"}\n", `bad.yaml:11:22: alerts.sinks.w.webhook.url: "ftp://x/": want an http:// or https:// URL`},
		{"  sinks:\n    w:\n      webhook: {url: \"http://[::1\"}\n", `alerts.sinks.w.webhook.url: bad URL: missing ']' in host`},
		{"  sinks:\n    w:\n      webhook: {url: \"http://10.0.0.1/a\"}\n", `is plain http to another host`},
		{"  sinks:\n    w:\n      webhook: {url: \"https://u:pw@h/\"}\n", `credentials in the URL`},
		{"  sinks:\n    w:\n      webhook: {url: \"https://h:99999/\"}\n", `port "99999" is not a number from 1 to 65535`},
		{"  sinks:\n    w:\n      webhook: {url: \"https://h:0/\"}\n", `port "0" is not a number`},
		{"  sinks:\n    w:\n      webhook: {url: \"http://127.0.0.1:/\"}\n", `"http://127.0.0.1:/": empty port`},
		{"  sinks:\n    w:\n      webhook: {url: \"https://h/" + strings.Repeat("a", 3000) + "\"}\n", `URL of 3010 bytes: at most 2048`},
		{"  sinks:\n    w:\n      webhook: {url: \"https://h/\", headers: {X-Token: \"${NOPE}\"}}\n",
			`bad.yaml:11:55: alerts.sinks.w.webhook.headers.X-Token: ${NOPE} names no declared secret`},
		{"  sinks:\n    w:\n      webhook: {url: \"https://h/\", headers: {X-Token: \"${ALERT_TOKEN\"}}\n", `unclosed ${`},
		{"  sinks:\n    w:\n      webhook: {url: \"https://h/\", headers: {\"a b\": x}}\n", `"a b" is not a valid header name`},
		{"  sinks:\n    w:\n      webhook: {url: \"https://h/\", timeout: 1h}\n", `alerts.sinks.w.webhook.timeout: 1h0m0s is out of range (100ms to 1m0s)`},
		{"  sinks:\n    w:\n      webhook: {url: \"https://h/\", timeout: 99999999999h}\n", `bad duration`},
		{"  window: 1ms\n", `bad.yaml:9:11: alerts.window: 1ms is out of range (1s to 24h0m0s)`},
		{"  session_down_after: 1000h\n", `alerts.session_down_after: 1000h0m0s is out of range`},
		{"  sinks:\n    w:\n      on: [hook_failures]\n      webhook: {url: \"https://h/\"}\n", `alerts.sinks.w.on[0]: unknown alert kind "hook_failures"`},
		{"  sinks:\n    w:\n      on: [files, files]\n      webhook: {url: \"https://h/\"}\n", `alerts.sinks.w.on[1]: "files" is listed twice`},
		{"  sinks:\n    w:\n      on: []\n      webhook: {url: \"https://h/\"}\n", `alerts.sinks.w.on: an empty list sends nothing`},
		{"  sinks:\n    \"bad name\":\n      webhook: {url: \"https://h/\"}\n", `alerts.sinks."bad name": a sink name is`},
		{"  sinks:\n    w:\n      webhok: {url: \"https://h/\"}\n", `alerts.sinks.w.webhok: unknown field "webhok" (did you mean "webhook"?)`},
	}
	for _, c := range cases {
		_, err := Load(writeFile(t, "bad.yaml", alertsBase+"alerts:\n"+c.alerts))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("alerts:\n%s\nerror = %v\nwant it to contain %q", c.alerts, err, c.want)
		}
	}
}

func TestLoadAlertsTooMany(t *testing.T) {
	var b strings.Builder
	b.WriteString(alertsBase + "alerts:\n  sinks:\n")
	for i := range 17 {
		b.WriteString("    s" + string(rune('a'+i)) + ": {webhook: {url: \"https://h/\"}}\n")
	}
	b.WriteString("    x:\n      xmpp:\n        profile: main\n        to: [")
	for i := range 33 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("u" + strings.Repeat("x", i) + "@h")
	}
	b.WriteString("]\n")
	_, err := Load(writeFile(t, "bad.yaml", b.String()))
	for _, want := range []string{"alerts.sinks: 18 sinks: at most 16", "alerts.sinks.x.xmpp.to: 33 JIDs: at most 32"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want %q", err, want)
		}
	}
}

func TestExpandSecrets(t *testing.T) {
	look := func(n string) (string, error) { return "<" + n + ">", nil }
	for in, want := range map[string]string{"a $b ${C}d": "a $b <C>d", "": "", "${A}${B}": "<A><B>"} {
		if got, err := ExpandSecrets(in, look); err != nil || got != want {
			t.Errorf("ExpandSecrets(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"${", "${1A}", "${a-b}"} {
		if _, err := ExpandSecrets(in, look); err == nil {
			t.Errorf("ExpandSecrets(%q): no error", in)
		}
	}
}

// The README's alerts example loads as shown (with a profile to send
// through).
func TestReadmeAlertsExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(b), "```yaml\nsecrets:\n  PAGER_TOKEN")
	if !ok {
		t.Fatal("README has no alerts example")
	}
	block, _, _ = strings.Cut(block, "```")
	p := writeFile(t, "readme.yaml", "profiles:\n  default: {jid: bot@example.org, password_env: PW}\nsecrets:\n  PAGER_TOKEN"+block)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Alerts.Sinks) != 2 || c.Alerts.Sinks["pager"].Webhook == nil || len(c.Alerts.Sinks["ops"].XMPP.To) != 2 {
		t.Errorf("alerts = %+v", c.Alerts)
	}
}
