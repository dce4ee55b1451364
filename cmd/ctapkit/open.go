package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/manifoldco/promptui"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	conformance "github.com/ctapkit/ctapkit/fido-conformance"
	"github.com/ctapkit/ctapkit/fido-conformance/softtarget"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/hid"
	"github.com/ctapkit/ctapkit/transport/pcsc"
	"github.com/ctapkit/ctapkit/transport/udp"
)

// registerSchemes wires the device URI schemes this build supports into a's registry.
// The soft scheme sits here, above both transport and softkey, as the design asks.
func registerSchemes(a *app) {
	must := func(err error) {
		if err != nil {
			panic(err) // a programming error: a scheme registered twice
		}
	}
	must(a.registry.Register(transport.Scheme{Name: "soft", Open: a.openSoftkey}))
	must(a.registry.Register(lateScheme(func() transport.Scheme { return pcsc.Scheme(pcsc.Options{Log: a.apduLog()}) })))
	must(a.registry.Register(lateScheme(func() transport.Scheme { return hid.Scheme(hid.Options{Log: a.frameLog()}) })))
	must(a.registry.Register(lateScheme(func() transport.Scheme { return udp.Scheme(udp.Options{Log: a.frameLog()}) })))
}

// newClient wraps dev in a CTAP2 client that falls back to U2F for U2F-only keys, as
// libfido2 and python-fido2 do: makeCredential and getAssertion are emulated over
// U2F REGISTER and AUTHENTICATE (ES256, non-discoverable, no PIN/UV, fido-u2f
// attestation). keepalive hears that the key waits for a touch on either path.
func newClient(dev transport.Device, keepalive func(status byte)) *ctap2.Client {
	u2f := ctap1.NewClient(dev, ctap1.WithKeepaliveFunc(keepalive))
	return ctap2.NewClient(dev, ctap2.WithKeepaliveFunc(keepalive), ctap2.WithU2FFallback(u2f))
}

// openDevice opens the device named by -d, $CTAPKIT_DEVICE, or the only attached one.
func (a *app) openDevice(ctx context.Context) (transport.Device, error) {
	uri, err := a.resolveDeviceURI(ctx)
	if err != nil {
		return nil, err
	}
	a.debugf("opening %s", uri)
	dev, err := a.registry.Open(ctx, uri)
	if err != nil {
		return nil, err
	}
	return guardedDevice{dev}, nil
}

// resolveDeviceURI names the device to use: -d, $CTAPKIT_DEVICE, or the only
// attached one (a prompt chooses among several on a terminal).
func (a *app) resolveDeviceURI(ctx context.Context) (string, error) {
	uri := a.deviceURI
	if uri == "" {
		uri = os.Getenv("CTAPKIT_DEVICE")
	}
	if uri == "" {
		return a.pickDevice(ctx)
	}
	return uri, nil
}

// pickDevice applies the selection rules: one device is used; several are
// selected by touch (select.go) when stderr is a terminal, or offered in a prompt
// if none of them can be, otherwise listed in the error; none is exit code 3.
func (a *app) pickDevice(ctx context.Context) (string, error) {
	infos, err := a.registry.Enumerate(ctx)
	if len(infos) == 0 {
		return "", noDeviceError(err)
	}
	if len(infos) == 1 {
		return infos[0].URI, nil
	}
	var uris []string
	for _, i := range infos {
		uris = append(uris, i.URI)
	}
	if a.io.errTTY {
		uri, err := a.touchSelect(ctx, uris)
		if !errors.Is(err, errNoTouchSelect) {
			return uri, err
		}
	}
	if !a.io.CanPrompt() {
		return "", fmt.Errorf("%w: %s; choose one with -d", transport.ErrAmbiguous, strings.Join(uris, ", "))
	}
	sel := promptui.Select{Label: "Several security keys are attached; use which one", Items: uris,
		Stdin: readCloser{a.io.In}, Stdout: writeCloser{a.io.ErrOut}}
	_, uri, err := sel.Run()
	if err != nil {
		return "", fmt.Errorf("choosing a device: %w", err)
	}
	return uri, nil
}

// noDeviceError is exit code 3 when nothing is attached; err is Enumerate's.
func noDeviceError(err error) error {
	if err != nil {
		return fmt.Errorf("%w: %v", transport.ErrNoDevice, err)
	}
	return withHint(fmt.Errorf("%w: plug in a security key or name one with -d", transport.ErrNoDevice),
		"for a software key: ctapkit softkey init --state ./softkey.db --no-passphrase, then -d soft:./softkey.db (or -d soft:mem)")
}

// openSoftkey opens a softkey in-process: soft:mem is ephemeral, anything else is a
// state file made by `ctapkit softkey init`. The softkey is served through real
// CTAPHID framing over an in-memory pipe, so the host code path is the hardware one.
func (a *app) openSoftkey(ctx context.Context, path string) (transport.Device, error) {
	knobs, err := softkeyKnobs()
	if err != nil {
		return nil, err
	}
	st, err := openSoftStore(path)
	if err != nil {
		return nil, err
	}
	if err := useStoredAttestation(st, &knobs.cfg); err != nil {
		st.Close()
		return nil, err
	}
	knobs.cfg.WinkFunc = func() { a.debugf("soft:%s winks", path) } // a real key would blink
	auth, err := softkey.New(st, knobs.cfg)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("starting softkey: %w", err)
	}
	dev, err := expose.InProcess(ctx, auth, expose.InProcessOptions{Info: softDeviceInfo(path), Log: a.frameLog(), U2FOnly: knobs.u2fOnly})
	if err != nil {
		auth.Close()
		return nil, err
	}
	if knobs.hangAfter >= 0 {
		return newHangingDevice(dev, knobs.hangAfter, knobs.unplug), nil
	}
	return dev, nil
}

// openSoftTarget opens a soft: device as a full conformance target: besides the
// CTAP2 client, CTAPHID cases get a raw link to the same softkey and power cycles
// restart it on the same state. With the U2F-only or hang test knobs it is the
// plain device of openSoftkey instead (no raw link, no power cycles). A soft:
// device never waits for a person: it grants (auto) or declines (deny) a touch
// by itself, so its target has AutoPresence.
func (a *app) openSoftTarget(ctx context.Context, path string, keepalive func(byte)) (*conformance.Target, func() error, error) {
	knobs, err := softkeyKnobs()
	if err != nil {
		return nil, nil, err
	}
	if knobs.u2fOnly || knobs.hangAfter >= 0 {
		dev, err := a.openSoftkey(ctx, path)
		if err != nil {
			return nil, nil, err
		}
		return &conformance.Target{Device: dev, Client: newClient(dev, keepalive), AutoPresence: true}, dev.Close, nil
	}
	st, err := openSoftStore(path)
	if err != nil {
		return nil, nil, err
	}
	if err := useStoredAttestation(st, &knobs.cfg); err != nil {
		st.Close()
		return nil, nil, err
	}
	s, err := softtarget.New(ctx, st, knobs.cfg, softDeviceInfo(path))
	if err != nil {
		return nil, nil, err
	}
	s.AutoPresence = true
	return s.Target, s.Close, nil
}

// softkeyConfig is what the soft: test knobs in the environment ask for.
type softkeyConfig struct {
	cfg       softkey.Config
	u2fOnly   bool
	hangAfter int  // -1: never
	unplug    bool // after hangAfter requests it is gone rather than hung
}

// softkeyKnobs reads the soft: device knobs from the environment:
// CTAPKIT_SOFTKEY_PRESENCE, CTAPKIT_SOFTKEY_UV, and the test knobs
// CTAPKIT_SOFTKEY_U2F_ONLY and CTAPKIT_SOFTKEY_HANG_AFTER.
func softkeyKnobs() (softkeyConfig, error) {
	k := softkeyConfig{cfg: softkey.Config{Presence: softkey.PresenceAuto}, hangAfter: -1}
	if p := os.Getenv("CTAPKIT_SOFTKEY_PRESENCE"); p != "" {
		switch pp := softkey.PresencePolicy(p); pp {
		case softkey.PresenceAuto, softkey.PresenceDeny:
			k.cfg.Presence = pp
		case "prompt": // asks on this process's terminal (presenceprompt.go)
			k.cfg.PresenceFunc = promptPresence
		default:
			return k, usageErrorf("CTAPKIT_SOFTKEY_PRESENCE=%q: want auto, prompt or deny", p)
		}
	}
	// CTAPKIT_SOFTKEY_UV=pass|fail gives the softkey simulated built-in user
	// verification (a fingerprint that always matches, or never does).
	switch v := softkey.UVMode(os.Getenv("CTAPKIT_SOFTKEY_UV")); v {
	case "", softkey.UVNone, softkey.UVPass, softkey.UVFail:
		k.cfg.UV = v
	default:
		return k, usageErrorf("CTAPKIT_SOFTKEY_UV=%q: want pass, fail or none", v)
	}
	// Test knob: CTAPKIT_SOFTKEY_U2F_ONLY=1 serves the softkey as a U2F-only key (no
	// CBOR capability), to exercise the host's U2F fallback without an old key.
	switch v := os.Getenv("CTAPKIT_SOFTKEY_U2F_ONLY"); v {
	case "", "0":
	case "1":
		k.u2fOnly = true
	default:
		return k, usageErrorf("CTAPKIT_SOFTKEY_U2F_ONLY=%q: want 1 or 0", v)
	}
	// Test knobs: CTAPKIT_SOFTKEY_HANG_AFTER=N makes the device answer N requests
	// and then hang, CTAPKIT_SOFTKEY_UNPLUG_AFTER=N then vanish (see
	// hangingDevice), to show that commands and the conformance suite end cleanly
	// when a key stops answering.
	for _, knob := range []struct {
		env    string
		unplug bool
	}{{"CTAPKIT_SOFTKEY_HANG_AFTER", false}, {"CTAPKIT_SOFTKEY_UNPLUG_AFTER", true}} {
		v := os.Getenv(knob.env)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return k, usageErrorf("%s=%q: want a number of requests", knob.env, v)
		}
		k.hangAfter, k.unplug = n, knob.unplug
	}
	return k, nil
}

// openSoftStore opens the store of a soft: URI: soft:mem is a fresh in-memory one.
// An encrypted state file takes its passphrase from CTAPKIT_SOFTKEY_PASSPHRASE or,
// on a terminal, a prompt on this process's stdin and stderr (passphrase.go).
func openSoftStore(path string) (store.Store, error) {
	if path == "mem" {
		return store.NewMemory(store.Meta{}), nil
	}
	db, err := openStateFile(systemStreams(), path, "")
	if err != nil {
		return nil, err
	}
	return db, nil
}

// useStoredAttestation gives cfg the state's batch attestation key, if it has one:
// batch attestation signs with it, and enterprise attestation uses it whatever the
// mode (softkey.Config.BatchKey).
func useStoredAttestation(st store.Store, cfg *softkey.Config) error {
	as, ok := st.(store.AttestationStore)
	if !ok {
		return nil
	}
	der, certs, err := as.AttestationKey()
	if err != nil || der == nil {
		return err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return fmt.Errorf("batch attestation key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return fmt.Errorf("batch attestation key is a %T, not a signing key", k)
	}
	cfg.BatchKey, cfg.BatchCerts = signer, certs
	return nil
}

func softDeviceInfo(path string) transport.DeviceInfo {
	return transport.DeviceInfo{URI: "soft:" + path, Transport: "soft", Path: path,
		Product: "ctapkit softkey", Manufacturer: "ctapkit"}
}

// softkeyOpenError explains a state file that cannot be opened, with the fix. The
// store's errors name the file and what is wrong with it; a wrong passphrase is exit
// code 1 with a hint, a missing one (no terminal to ask) a usage error, exit code 2.
func softkeyOpenError(path string, err error) error {
	var ue *usageError
	switch {
	case errors.As(err, &ue), errors.Is(err, errCancelled):
		return err // from the passphrase source: says what is missing
	case errors.Is(err, store.ErrNotExist):
		return withHint(&quietError{fmt.Sprintf("no softkey state at %s", path), transport.ErrNoDevice},
			"create one with: ctapkit softkey init --state "+path+" (--no-passphrase for an unencrypted one)")
	case errors.Is(err, store.ErrWrongPassphrase):
		return withHint(err, "the passphrase is the one given to softkey init or passphrase change; it comes from "+
			envPassphrase+", --passphrase-file or the prompt")
	case errors.Is(err, store.ErrPassphraseRequired):
		return withHint(&usageError{err}, "set "+envPassphrase+" or pass --passphrase-file FILE")
	case errors.Is(err, store.ErrUnsafeFile):
		return withHint(err, "a state file must belong to the user who runs ctapkit and be readable by nobody else (mode 600)")
	case errors.Is(err, store.ErrNotSoftkey), errors.Is(err, store.ErrInUse), errors.Is(err, store.ErrDamaged),
		errors.Is(err, store.ErrNewerVersion):
		return err
	}
	return fmt.Errorf("opening softkey state %s: %w", path, err)
}

// promptui wants ReadCloser/WriteCloser; closing our streams is not its business.
type readCloser struct {
	r interface{ Read([]byte) (int, error) }
}

func (r readCloser) Read(p []byte) (int, error) { return r.r.Read(p) }
func (readCloser) Close() error                 { return nil }

type writeCloser struct {
	w interface{ Write([]byte) (int, error) }
}

func (w writeCloser) Write(p []byte) (int, error) { return w.w.Write(p) }
func (writeCloser) Close() error                  { return nil }
