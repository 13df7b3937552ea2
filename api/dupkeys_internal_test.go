package api

import (
	"fmt"
	"testing"
)

func TestCheckDuplicateKeys(t *testing.T) {
	for body, want := range map[string]string{
		`{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}`: "",
		`{"a":1,"a":2}`:                       `key "a" given twice in one object`,
		`{"x":{"n":[1,{"k":1}],"n":2}}`:       `key "n" given twice in one object`,
		`[{"a":"a","b":"a"},{"a":"b","a":1}]`: `key "a" given twice in one object`,
		`{"a":"b","b":"a"}`:                   "",
		`{"a":`:                               "",
	} {
		err := checkDuplicateKeys([]byte(body))
		if got := fmt.Sprint(err); (err == nil && want != "") || (err != nil && got != want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}
