// Package daemon is the hookctl backend's wiring: it opens the registry,
// builds one XMPP session and one subscription manager per profile, the
// catch-up tracker, the dispatcher and the control API, and runs them under
// one lifecycle (Run blocks until its context ends, then shuts down in
// order). The logic lives in those packages; see docs/ARCHITECTURE.md.
package daemon
