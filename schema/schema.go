// Package schema holds the JSON Schema of hooks files (hooks.schema.json),
// for editors (yaml-language-server) and for `hookctl schema`. The rules
// package stays the authority on what a valid hook is; a test checks that
// every example and test hooks file the rules accept, the schema accepts.
package schema

import _ "embed"

// Hooks is the JSON Schema (draft 2020-12) of a hooks file.
//
//go:embed hooks.schema.json
var Hooks []byte
