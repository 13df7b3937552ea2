package hookctl

import "testing"

func TestRedactURLCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"https://bob:s3cret@example.com/x":              "https://bob:xxxxx@example.com/x",
		"Post \"http://u:p@h:1/a\": EOF":                "Post \"http://u:xxxxx@h:1/a\": EOF",
		"https://ghp_token@github.com/o/r":              "https://xxxxx@github.com/o/r",
		"mail bob@example.com, see https://example.com": "mail bob@example.com, see https://example.com",
		"a http://x:y@h b HTTPS://c:d@e":                "a http://x:xxxxx@h b HTTPS://c:xxxxx@e",
		"https://h/path?q=a@b":                          "https://h/path?q=a@b",
	} {
		if got := RedactURLCredentials(in); got != want {
			t.Errorf("RedactURLCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}
