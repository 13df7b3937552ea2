package registry

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl"
)

// normaliseJID returns the bare form of a JID as XMPP compares them
// (PRECIS: localpart case-mapped, domain lower-cased), so that a hook for
// "PubSub.Example.org" matches events from "pubsub.example.org". A resource
// is dropped: services are addressed by bare JID, as in the reference.
func normaliseJID(s string) (string, error) {
	j, err := jid.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", err
	}
	return j.Bare().String(), nil
}

// normaliseService checks the profile and returns the service as stored:
// the profile's bare JID when empty and known, else the normalised JID.
// A non-nil cache maps a service as given to its normalised form: PRECIS
// parsing is the costliest step of validating a big batch, and a batch
// names few services.
func (s *Store) normaliseService(profile, service string, cache map[string]string) (string, error) {
	own := ""
	if s.profiles != nil {
		j, ok := s.profiles[profile]
		if !ok {
			return "", fmt.Errorf("%w: unknown profile %q", hookctl.ErrNotFound, profile)
		}
		own = j
	}
	service = strings.TrimSpace(service)
	if service == "" {
		return own, nil
	}
	if bare, ok := cache[service]; ok {
		return bare, nil
	}
	bare, err := normaliseJID(service)
	if err != nil {
		return "", fmt.Errorf("%w: service %q is not a valid JID: %v", hookctl.ErrInvalid, service, err)
	}
	if cache != nil {
		cache[service] = bare
	}
	return bare, nil
}

// normaliseKey validates the identity fields and normalises Service.
func (s *Store) normaliseKey(k hookctl.Key, cache map[string]string) (hookctl.Key, error) {
	if k.Profile == "" {
		return k, fmt.Errorf("%w: hook %s: profile is empty", hookctl.ErrInvalid, k)
	}
	svc, err := s.normaliseService(k.Profile, k.Service, cache)
	if err != nil {
		return k, err
	}
	k.Service = svc
	switch {
	case k.Node == "":
		return k, fmt.Errorf("%w: hook %s: node is empty", hookctl.ErrInvalid, k)
	case !k.Type.Valid():
		return k, fmt.Errorf("%w: hook %s: unknown type %q", hookctl.ErrInvalid, k, k.Type)
	case k.Arg == "":
		return k, fmt.Errorf("%w: hook %s: arg is empty", hookctl.ErrInvalid, k)
	case len(k.Profile) > MaxProfile:
		return k, fmt.Errorf("%w: profile is %d bytes, at most %d", hookctl.ErrInvalid, len(k.Profile), MaxProfile)
	case len(k.Node) > MaxNode:
		return k, fmt.Errorf("%w: node is %d bytes, at most %d", hookctl.ErrInvalid, len(k.Node), MaxNode)
	case len(k.Arg) > MaxArg:
		return k, fmt.Errorf("%w: arg is %d bytes, at most %d (put long code in a python_file)", hookctl.ErrInvalid, len(k.Arg), MaxArg)
	}
	return k, nil
}

// Size limits of a key's fields. bbolt keys are at most 32 KiB and a key
// holds all five fields; a JID is at most 3 KiB by RFC 7622.
const (
	MaxProfile = 256
	MaxNode    = 1024
	MaxArg     = 16 << 10
)

// normaliseHook validates h and returns the registry's own copy of it, with
// Service normalised. Created is left for the caller to set.
func (s *Store) normaliseHook(h hookctl.Hook, cache map[string]string) (hookctl.Hook, error) {
	k, err := s.normaliseKey(h.Key, cache)
	if err != nil {
		return h, err
	}
	h.Key = k
	for _, e := range h.Events {
		if !e.Valid() {
			return h, fmt.Errorf("%w: hook %s: unknown event %q", hookctl.ErrInvalid, k, e)
		}
	}
	switch {
	case h.Concurrency < 0:
		return h, fmt.Errorf("%w: hook %s: concurrency %d is negative", hookctl.ErrInvalid, k, h.Concurrency)
	case h.Timeout < 0:
		return h, fmt.Errorf("%w: hook %s: timeout %s is negative", hookctl.ErrInvalid, k, h.Timeout)
	case h.Catchup != hookctl.CatchupNew && h.Catchup != hookctl.CatchupAll && h.Catchup != hookctl.CatchupNone:
		return h, fmt.Errorf("%w: hook %s: unknown catchup %q (want all or none)", hookctl.ErrInvalid, k, h.Catchup)
	}
	return cloneHook(h), nil
}

// cloneHook copies the hook's slices and map, so that neither the caller nor
// the registry can change the other's hook afterwards.
func cloneHook(h hookctl.Hook) hookctl.Hook {
	if h.Args != nil {
		h.Args = slices.Clone(h.Args)
	}
	if h.Events != nil {
		h.Events = slices.Clone(h.Events)
	}
	if h.Headers != nil {
		h.Headers = maps.Clone(h.Headers)
	}
	return h
}
