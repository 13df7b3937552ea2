package hookctl

import (
	"regexp"
	"strings"
)

// urlUserinfo matches the user information of URLs in free text:
// scheme://user:password@ or scheme://token@.
var urlUserinfo = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/?#@:'"<>]*)(:[^\s/?#@'"<>]*)?@`)

// Redacted stands for a removed secret.
const Redacted = "xxxxx"

// RedactURLCredentials hides the credentials of every URL in s: the
// password of user:password@ (the user stays, as url.URL.Redacted keeps
// it), or the whole user part when it is alone, since that is often a
// token (https://TOKEN@host). Runs, logs and status show hook args and
// errors through it.
func RedactURLCredentials(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return urlUserinfo.ReplaceAllStringFunc(s, func(m string) string {
		sub := urlUserinfo.FindStringSubmatch(m)
		if sub[3] != "" {
			return sub[1] + sub[2] + ":" + Redacted + "@"
		}
		return sub[1] + Redacted + "@"
	})
}
