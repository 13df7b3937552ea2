// Package api is hookctl's control API: HTTP+JSON on a 0600 Unix socket (or
// TCP with a bearer token), versioned under /v1/, with its Go client. The
// CLI and the reconciler reach the backend only through Client.
package api
