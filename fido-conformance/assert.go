package conformance

import (
	"errors"

	"github.com/ctapkit/ctapkit/ctap2"
)

// statusName renders an error the way results compare them: the CTAP status name
// when there is one ("CTAP2_OK" for success), else the error text.
func statusName(err error) string {
	if err == nil {
		return "CTAP2_OK"
	}
	if s, ok := ctap2.StatusOf(err); ok {
		return s.Name()
	}
	return err.Error()
}

// ExpectStatus fails the case unless err carries the CTAP status want (StatusOK
// for success). The message says what was sent, observed and expected.
func (t *T) ExpectStatus(what string, err error, want ctap2.StatusError) bool {
	if want == ctap2.StatusOK && err == nil {
		return true
	}
	if want != ctap2.StatusOK && errors.Is(err, want) {
		return true
	}
	t.Errorf("%s: observed %s, expected %s", what, statusName(err), want.Name())
	return false
}

// ExpectOneOf is ExpectStatus for requirements that allow several statuses.
func (t *T) ExpectOneOf(what string, err error, want ...ctap2.StatusError) bool {
	for _, w := range want {
		if (w == ctap2.StatusOK && err == nil) || (w != ctap2.StatusOK && errors.Is(err, w)) {
			return true
		}
	}
	names := ""
	for i, w := range want {
		if i > 0 {
			names += " or "
		}
		names += w.Name()
	}
	t.Errorf("%s: observed %s, expected %s", what, statusName(err), names)
	return false
}

// Must ends the case when err is not nil: a step the test depends on failed.
func (t *T) Must(what string, err error) {
	if err != nil {
		t.Fatalf("%s: %s", what, statusName(err))
	}
}

// RequireOption skips the case unless getInfo lists option name as true.
func (t *T) RequireOption(name string) {
	if v, _ := t.Info().Option(name); !v {
		t.Skipf("the key does not support %s (getInfo option %q)", name, name)
	}
}

// RequireExtension skips the case unless getInfo lists the extension.
func (t *T) RequireExtension(name string) {
	for _, e := range t.Info().Extensions {
		if e == name {
			return
		}
	}
	t.Skipf("the key does not support the %s extension", name)
}

// RequireVersion skips the case unless getInfo lists the version (e.g. FIDO_2_1).
func (t *T) RequireVersion(v string) {
	if !t.Info().HasVersion(v) {
		t.Skipf("the key does not claim %s", v)
	}
}

// RequireHID skips the case without raw CTAPHID access to the target.
func (t *T) RequireHID() HIDLink {
	if t.target.HID == nil {
		t.Skipf("no raw CTAPHID access to this device (not a HID transport)")
	}
	return t.target.HID
}

// PINToken returns a pinUvAuthToken with perms for rpID using the target's PIN.
// The case is skipped when the key has no PIN or no credential management
// support needed for the request, or when the target gave no PIN.
func (t *T) PINToken(perms ctap2.Permission, rpID string) *ctap2.PINToken {
	info := t.Info()
	if set, _ := info.Option("clientPin"); !set {
		t.Skipf("the key has no PIN set (destructive cases set one)")
	}
	if t.target.PIN == "" {
		t.Skipf("the key has a PIN, but none was given to the suite")
	}
	tok, err := t.Client().PINToken(t.ctx, t.target.PIN, perms, rpID)
	t.Must("getting a PIN token", err)
	return tok
}

// DefaultPIN is the PIN destructive cases set on a key that has none.
const DefaultPIN = "12345678"

// EnsurePIN makes sure the key has a PIN the suite knows, setting Target.PIN
// (DefaultPIN unless the target names one) on a key without a PIN. Only
// destructive cases may call it: it changes the key.
func (t *T) EnsurePIN() string {
	info := t.Info()
	set, supported := info.Option("clientPin")
	switch {
	case !supported:
		t.Skipf("the key does not support a PIN")
	case set && t.target.PIN == "":
		t.Skipf("the key has a PIN, but none was given to the suite")
	case !set:
		if t.target.PIN == "" {
			t.target.PIN = DefaultPIN
		}
		t.Must("setting the suite's PIN", t.Client().SetPIN(t.ctx, t.target.PIN))
		t.Logf("set the PIN to %q", t.target.PIN)
	}
	return t.target.PIN
}
