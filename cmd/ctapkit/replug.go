package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/transport"
)

// Keys accept authenticatorReset only within about 10 s of power-up and answer
// CTAP2_ERR_NOT_ALLOWED later. Good vendor tools then ask for the key to be
// re-plugged, watch it go and come back, and send the reset at once; this file
// does that for the schemes whose devices a person can pull out (hid:, pcsc:).
// The key that comes back must be the one the user chose: same transport,
// vendor and product IDs, serial number when the key has one, the same reader
// for PC/SC, and the same AAGUID in getInfo. Keys attached all along are never
// candidates. Without a serial number two keys of one model cannot be told
// apart; when another key like the chosen one is removed during the wait, the
// reset is refused rather than risk the wrong one.

// replugSchemes are the URI schemes whose keys can be removed and inserted again.
var replugSchemes = map[string]bool{"hid": true, "pcsc": true}

// replugOptions paces the watch; the zero value gives the defaults.
type replugOptions struct {
	poll  time.Duration // Enumerate interval; default 250 ms
	limit time.Duration // the whole watch, at least --timeout; default 60 s
}

func (o replugOptions) withDefaults() replugOptions {
	if o.poll <= 0 {
		o.poll = 250 * time.Millisecond
	}
	if o.limit <= 0 {
		o.limit = 60 * time.Second
	}
	return o
}

// keyIdentity is what tells the chosen key from others after a re-plug.
type keyIdentity struct {
	info   transport.DeviceInfo // as opened (the URI may change on re-plug)
	scheme string
	aaguid []byte
}

// sameKind reports whether a listed device may be the chosen key, from what the
// listing says; "" if so, else why not.
func (id keyIdentity) sameKind(d transport.DeviceInfo) string {
	switch {
	case d.Transport != id.info.Transport:
		return "another transport"
	case id.scheme == "pcsc" && d.URI != id.info.URI:
		return "another reader"
	case d.VendorID != id.info.VendorID || d.ProductID != id.info.ProductID:
		return fmt.Sprintf("USB ID %04x:%04x, not %04x:%04x", d.VendorID, d.ProductID, id.info.VendorID, id.info.ProductID)
	case id.info.Serial != "" && d.Serial != id.info.Serial:
		return fmt.Sprintf("serial %q, not %q", d.Serial, id.info.Serial)
	}
	return ""
}

// canReplug reports whether uri names a key that a person can re-plug.
func canReplug(uri string) bool {
	u, err := transport.ParseURI(uri)
	return err == nil && replugSchemes[u.Scheme]
}

// notAllowedHint is what to do about a refused reset on a key that is not
// re-plugged for the user.
func notAllowedHint(uri string) string {
	u, _ := transport.ParseURI(uri)
	switch u.Scheme {
	case "udp":
		return "keys accept reset only within 10 s of power-up: power-cycle the served softkey (send SIGHUP to ctapkit softkey serve) and run reset at once"
	case "soft":
		return "a soft: key accepts reset only within 10 s of being opened"
	}
	return "keys accept reset only within 10 s of power-up: re-plug the key and run reset at once"
}

// resetAfterReplug is reset's second attempt after the key at s refused with
// NOT_ALLOWED: the user re-plugs it, and the reset goes to the same key as soon
// as it is back. It takes over s (and closes it). It returns the URI the key has
// now, which may differ from before.
func (a *app) resetAfterReplug(parent context.Context, s *session, opts replugOptions) (string, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(parent, max(a.timeout, opts.limit))
	defer cancel()

	id, err := a.identify(ctx, s)
	if err != nil {
		s.Close()
		return "", fmt.Errorf("reset: %w", err)
	}
	uri := id.info.URI
	fmt.Fprintf(a.io.ErrOut, "The key refused the reset: keys accept it only within 10 seconds of being plugged in.\n")
	fmt.Fprintf(a.io.ErrOut, "Remove the key (%s) and insert it again; waiting up to %v…\n", uri, max(a.timeout, opts.limit).Round(time.Second))

	baseline, err := a.awaitRemoval(ctx, s, id, opts.poll)
	s.Close()
	if err != nil {
		return "", replugWaitError("removed", err)
	}
	fmt.Fprintln(a.io.ErrOut, "Key removed. Insert it again.")

	back, err := a.awaitReturn(ctx, id, baseline, opts.poll)
	if err != nil {
		return "", replugWaitError("inserted again", err)
	}
	defer back.Close()
	newURI := back.dev.Info().URI
	fmt.Fprintf(a.io.ErrOut, "The key is back (%s). Touch it now to reset it.\n", newURI)
	// The reset goes out at once: the key's 10 s window started when it came
	// back. --timeout bounds the wait for the touch, as for every command.
	rctx, rcancel := a.withTimeout(parent)
	defer rcancel()
	if err := back.client.Reset(rctx); err != nil {
		if errors.Is(err, ctap2.ErrNotAllowed) {
			return "", withHint(fmt.Errorf("reset: %s refused again: %w", newURI, err),
				"the key took more than 10 s to come back or to be asked; run reset again and re-plug it at once")
		}
		return "", fmt.Errorf("reset: %w", err)
	}
	return newURI, nil
}

// replugWaitError explains a wait that timed out: exit code 5, with a message
// that says what was awaited (ErrTimeout rather than the deadline, whose
// generic message is about --timeout). Other errors say enough already.
func replugWaitError(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &quietError{fmt.Sprintf("reset: timed out waiting for the key to be %s; nothing was reset", what), transport.ErrTimeout}
	}
	return err
}

// identify records who s is: its DeviceInfo and getInfo's AAGUID.
func (a *app) identify(ctx context.Context, s *session) (keyIdentity, error) {
	info, err := s.client.Info(ctx)
	if err != nil {
		return keyIdentity{}, err
	}
	di := s.dev.Info()
	u, _ := transport.ParseURI(di.URI)
	return keyIdentity{info: di, scheme: u.Scheme, aaguid: bytes.Clone(info.AAGUID)}, nil
}

// awaitRemoval polls until the chosen key is gone: no longer listed, or no
// longer answering on the connection that s still holds, which also catches a
// re-plug faster than one poll that brought it back at the same path. It
// returns the other devices listed then: they stayed attached and are not taken
// for the key coming back.
func (a *app) awaitRemoval(ctx context.Context, s *session, id keyIdentity, poll time.Duration) (map[string]transport.DeviceInfo, error) {
	for {
		infos, err := a.registry.Enumerate(ctx)
		if err != nil {
			a.debugf("listing devices: %v", err)
		}
		listed := false
		others := map[string]transport.DeviceInfo{}
		for _, d := range infos {
			if d.URI == id.info.URI {
				listed = true
			} else {
				others[d.URI] = d
			}
		}
		if !listed {
			return others, nil
		}
		if _, err := s.client.GetInfo(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			a.debugf("%s stopped answering (%v): taken as removed", id.info.URI, err)
			return others, nil
		}
		if err := sleepCtx(ctx, poll); err != nil {
			return nil, err
		}
	}
}

// awaitReturn polls until the chosen key is attached again and returns an open
// session on it. Devices in baseline are not candidates while they stay;
// another device that shows up is checked (kind, then AAGUID) once while it
// stays attached, and named when it is not the chosen key.
func (a *app) awaitReturn(ctx context.Context, id keyIdentity, baseline map[string]transport.DeviceInfo, poll time.Duration) (*session, error) {
	rejected := map[string]bool{} // URI → checked and not the key, while listed
	var lookalikeGone []string    // devices like the key that left during the wait
	for {
		infos, err := a.registry.Enumerate(ctx)
		if err != nil {
			a.debugf("listing devices: %v", err)
		}
		listed := map[string]bool{}
		for _, d := range infos {
			listed[d.URI] = true
		}
		for uri, d := range baseline {
			if !listed[uri] {
				delete(baseline, uri)
				if id.sameKind(d) == "" {
					lookalikeGone = append(lookalikeGone, uri)
				}
			}
		}
		for uri := range rejected {
			if !listed[uri] {
				delete(rejected, uri) // gone: whatever comes there next is checked afresh
			}
		}
		var found []*session
		for _, d := range infos {
			if _, old := baseline[d.URI]; old || rejected[d.URI] {
				continue
			}
			s, why := a.checkCandidate(ctx, id, d)
			if s == nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if why != "" { // "" is a transient failure: try again next poll
					rejected[d.URI] = true
					fmt.Fprintf(a.io.ErrOut, "%s is not the key you chose (%s); it will not be reset. Insert the key you removed.\n", d.URI, why)
				}
				continue
			}
			found = append(found, s)
		}
		switch {
		case len(found) == 1 && len(lookalikeGone) == 0:
			return found[0], nil
		case len(found) > 0:
			var uris []string
			for _, s := range found {
				uris = append(uris, s.dev.Info().URI)
				s.Close()
			}
			if len(found) > 1 {
				return nil, &quietError{fmt.Sprintf("reset: several keys like the one you chose appeared (%s) and cannot be told apart; nothing was reset",
					strings.Join(uris, ", ")), transport.ErrAmbiguous}
			}
			return nil, &quietError{fmt.Sprintf("reset: another key like the one you chose (%s) was removed meanwhile, and %s cannot be told apart from it; nothing was reset",
				strings.Join(lookalikeGone, ", "), uris[0]), transport.ErrAmbiguous}
		}
		if err := sleepCtx(ctx, poll); err != nil {
			return nil, err
		}
	}
}

// checkCandidate opens d and returns a session if it is the chosen key. If it
// is not, why says so; why is "" when it could not be checked now (a key being
// enumerated by the system may not open at once).
func (a *app) checkCandidate(ctx context.Context, id keyIdentity, d transport.DeviceInfo) (s *session, why string) {
	if why := id.sameKind(d); why != "" {
		return nil, why
	}
	s, err := a.openSessionURI(ctx, d.URI)
	if err != nil {
		a.debugf("opening %s: %v", d.URI, err)
		return nil, ""
	}
	if why := id.sameKind(s.dev.Info()); why != "" {
		s.Close()
		return nil, why
	}
	info, err := s.client.GetInfo(ctx)
	if err != nil {
		s.Close()
		if errors.Is(err, ctap2.ErrU2FOnly) {
			return nil, "a U2F-only key"
		}
		a.debugf("getInfo on %s: %v", d.URI, err)
		return nil, ""
	}
	if !bytes.Equal(info.AAGUID, id.aaguid) {
		s.Close()
		return nil, fmt.Sprintf("AAGUID %s, not %s", hex.EncodeToString(info.AAGUID), hex.EncodeToString(id.aaguid))
	}
	return s, ""
}

// openSessionURI is openSession for a given URI rather than the selected one.
func (a *app) openSessionURI(ctx context.Context, uri string) (*session, error) {
	dev, err := a.registry.Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	g := guardedDevice{dev}
	n := &touchNotice{out: a.io.ErrOut, enabled: a.io.errTTY}
	return &session{dev: g, notice: n, client: newClient(g, n.status)}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
