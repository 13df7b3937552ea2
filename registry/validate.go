package registry

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"mellium.im/xmpp/jid"

	"hookctl.dev/hookctl"
	"hookctl.dev/hookctl/rules"
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
	bare, err := rules.BareJID(service)
	if err != nil {
		return "", fmt.Errorf("%w: service: %v", hookctl.ErrInvalid, err)
	}
	if cache != nil {
		cache[service] = bare
	}
	return bare, nil
}

// normaliseHook validates h by the one set of rules every door applies
// (rules.Check), and returns the registry's own copy of it, with Service
// normalised. Created is left for the caller to set.
func (s *Store) normaliseHook(h hookctl.Hook, cache map[string]string) (hookctl.Hook, error) {
	if err := rules.Validate(h); err != nil {
		return h, err
	}
	svc, err := s.normaliseService(h.Profile, h.Service, cache)
	if err != nil {
		return h, err
	}
	h.Service = svc
	h.Quarantined = "" // the registry's verdict, never the caller's
	return cloneHook(h), nil
}

// deleteKey is k with its service normalised when it can be: a deletion
// is never refused for the hook's own flaws, so that a quarantined hook
// (stored by an older version, or under limits since lowered) can always
// be removed.
func (s *Store) deleteKey(k hookctl.Key, cache map[string]string) hookctl.Key {
	if svc, err := s.normaliseService(k.Profile, k.Service, cache); err == nil {
		k.Service = svc
	}
	return k
}

// loadHook decodes one stored hook. One that no longer passes the rules (an
// older version stored it, a limit was lowered, its profile is gone) is
// kept as quarantined: listed with the reason, never run, removable. A
// stored value must never stop the backend from starting.
func (s *Store) loadHook(k, v []byte) hookctl.Hook {
	var h hookctl.Hook
	if err := json.Unmarshal(v, &h); err != nil {
		h = hookctl.Hook{}
		_ = json.Unmarshal(k, &[]any{&h.Profile, &h.Service, &h.Node, &h.Type, &h.Arg})
		h.Quarantined = "stored record unreadable: " + err.Error()
	} else if n, err := s.normaliseHook(h, nil); err != nil {
		h.Quarantined = err.Error()
	} else if n.Service != h.Service {
		h.Quarantined = fmt.Sprintf("hook %s: stored service %q is not in normal form %q", describeHook(h), h.Service, n.Service)
	}
	h.Persistent = true
	return h
}

// describeHook names a hook in messages: set/name when it has them, else
// its key.
func describeHook(h hookctl.Hook) string { return rules.IDOf(h).String() }

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
	if h.Env != nil {
		h.Env = maps.Clone(h.Env)
	}
	if h.Secrets != nil {
		h.Secrets = slices.Clone(h.Secrets)
	}
	return h
}
