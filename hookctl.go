// Package hookctl holds the domain types shared by every part of hookctl:
// hooks and their identity, PubSub events, the registry contract and the
// sentinel errors. It does no I/O; implementations live in subpackages.
package hookctl
