// Package daemon is the hookctl backend: it owns the registry, one XMPP
// session per profile, the dispatcher and the control API, and runs them
// under one lifecycle (Run blocks until its context ends, then shuts down).
package daemon
