package transport

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// URI is a parsed device URI: "hid:/dev/hidraw3", "pcsc:YubiKey", "soft:mem",
// "soft:/path/state.db", "udp:127.0.0.1:8111". Everything after the first colon is the
// scheme-specific Path, kept verbatim (reader names contain spaces and colons).
type URI struct {
	Scheme string
	Path   string
}

func (u URI) String() string { return u.Scheme + ":" + u.Path }

// ParseURI splits s into scheme and path. The scheme is lower-case letters and digits;
// the path must not be empty.
func ParseURI(s string) (URI, error) {
	scheme, path, ok := strings.Cut(s, ":")
	if !ok {
		return URI{}, fmt.Errorf("%w %q: want SCHEME:PATH, e.g. hid:/dev/hidraw0 or soft:mem", ErrBadURI, s)
	}
	if scheme == "" {
		return URI{}, fmt.Errorf("%w %q: missing scheme", ErrBadURI, s)
	}
	for _, r := range scheme {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return URI{}, fmt.Errorf("%w %q: scheme %q must be lower-case letters and digits", ErrBadURI, s, scheme)
		}
	}
	if path == "" {
		return URI{}, fmt.Errorf("%w %q: missing path after %q", ErrBadURI, s, scheme+":")
	}
	return URI{Scheme: scheme, Path: path}, nil
}

// Scheme opens and (optionally) enumerates the devices of one URI scheme.
type Scheme struct {
	Name string
	// Open connects to the device at path (the part of the URI after "scheme:").
	Open func(ctx context.Context, path string) (Device, error)
	// Enumerate lists the attached devices; nil for schemes that cannot be listed
	// (soft:, udp:). An error that wraps ErrNoDevice means "nothing here", not failure.
	Enumerate func(ctx context.Context) ([]DeviceInfo, error)
}

// Registry maps scheme names to their openers, the way database/sql maps drivers.
// The zero value is ready to use and safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	schemes map[string]Scheme
}

// Register adds a scheme; registering the same name twice is an error.
func (r *Registry) Register(s Scheme) error {
	if s.Name == "" || s.Open == nil {
		return errors.New("transport: scheme needs a name and an Open function")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.schemes[s.Name]; dup {
		return fmt.Errorf("transport: scheme %q registered twice", s.Name)
	}
	if r.schemes == nil {
		r.schemes = make(map[string]Scheme)
	}
	r.schemes[s.Name] = s
	return nil
}

// Schemes returns the registered scheme names, sorted.
func (r *Registry) Schemes() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.schemes))
	for n := range r.schemes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Open parses uri and opens the device with its scheme.
func (r *Registry) Open(ctx context.Context, uri string) (Device, error) {
	u, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	r.mu.RLock()
	s, ok := r.schemes[u.Scheme]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q in %q (known: %s)", ErrUnknownScheme, u.Scheme, uri, strings.Join(r.Schemes(), ", "))
	}
	return s.Open(ctx, u.Path)
}

// Enumerate lists the devices of every scheme that can be enumerated. A scheme that
// fails for a reason other than "nothing attached" makes the first such error part of
// the result, but the devices found elsewhere are still returned.
func (r *Registry) Enumerate(ctx context.Context) ([]DeviceInfo, error) {
	r.mu.RLock()
	var schemes []Scheme
	for _, s := range r.schemes {
		if s.Enumerate != nil {
			schemes = append(schemes, s)
		}
	}
	r.mu.RUnlock()
	sort.Slice(schemes, func(i, j int) bool { return schemes[i].Name < schemes[j].Name })
	var all []DeviceInfo
	var firstErr error
	for _, s := range schemes {
		infos, err := s.Enumerate(ctx)
		if err != nil && !errors.Is(err, ErrNoDevice) && firstErr == nil {
			firstErr = fmt.Errorf("listing %s devices: %w", s.Name, err)
		}
		all = append(all, infos...)
	}
	return all, firstErr
}
