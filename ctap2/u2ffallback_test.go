package ctap2_test

// The Client's U2F fallback: against the softkey served in-process as a U2F-only key
// (real CTAPHID framing, INIT without the CBOR capability), and against fake devices
// for the getInfo-fails path.

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/expose"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// countingDevice counts transactions by command; hideCaps drops the Capabilities
// method, as a transport without CTAPHID capabilities (NFC) would.
type countingDevice struct {
	transport.Device
	cbor, msg atomic.Int32
}

func (d *countingDevice) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	switch cmd {
	case transport.CmdCBOR:
		d.cbor.Add(1)
	case transport.CmdMsg:
		d.msg.Add(1)
	}
	return d.Device.Transact(ctx, cmd, data)
}

// withCaps is a countingDevice that reports the CTAPHID capabilities of the device.
type withCaps struct{ *countingDevice }

func (d withCaps) Capabilities() byte {
	return d.countingDevice.Device.(interface{ Capabilities() byte }).Capabilities()
}

func openU2FSoftkey(t *testing.T, u2fOnly bool) transport.Device {
	t.Helper()
	auth, err := softkey.New(store.NewMemory(store.Meta{}), softkey.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := expose.InProcess(context.Background(), auth, expose.InProcessOptions{U2FOnly: u2fOnly})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	return dev
}

func u2fMCReq(rpID, cdh string, algs ...ctap2.COSEAlgorithm) *ctap2.MakeCredentialRequest {
	req := mcReq(rpID)
	req.ClientDataHash = hash(cdh)
	if len(algs) > 0 {
		req.PubKeyCredParams = nil
		for _, a := range algs {
			req.PubKeyCredParams = append(req.PubKeyCredParams, ctap2.CredentialParam{Type: ctap2.CredentialType, Alg: a})
		}
	}
	return req
}

func TestU2FFallbackSoftkey(t *testing.T) {
	dev := &countingDevice{Device: openU2FSoftkey(t, true)}
	u2f := ctap1.NewClient(dev, ctap1.WithPollInterval(5*time.Millisecond))
	c := ctap2.NewClient(withCaps{dev}, ctap2.WithU2FFallback(u2f))
	ctx := context.Background()

	if !c.U2FOnly(ctx) {
		t.Fatal("U2FOnly = false for a key without the CBOR capability")
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Versions, []string{ctap2.U2FVersion}) || len(info.Algorithms) != 1 || info.Algorithms[0].Alg != ctap2.AlgES256 ||
		len(info.AAGUID) != 16 || len(info.Extensions) != 0 || len(info.PinUvAuthProtocols) != 0 {
		t.Errorf("synthetic info %+v", info)
	}
	if up, _ := info.Option("up"); !up {
		t.Error("no up")
	}
	for _, o := range []string{"rk", "uv", "clientPin", "plat"} {
		if v, _ := info.Option(o); v {
			t.Errorf("option %s", o)
		}
	}

	// Registration: fido-u2f attestation that verifies, ES256 picked from the list.
	req := u2fMCReq("example.com", "mc", ctap2.AlgEdDSA, ctap2.AlgES256)
	mc, err := c.MakeCredential(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if mc.Fmt != ctap2.FormatFIDOU2F {
		t.Errorf("fmt %q", mc.Fmt)
	}
	if _, err := mc.VerifyAttestation(req.ClientDataHash); err != nil {
		t.Fatalf("fido-u2f attestation: %v", err)
	}
	id, key, err := mc.CredentialKey()
	if err != nil {
		t.Fatal(err)
	}
	if key.Alg != ctap2.AlgES256 {
		t.Errorf("alg %v", key.Alg)
	}
	if n := dev.cbor.Load(); n != 0 {
		t.Errorf("%d CBOR messages sent to a U2F-only key", n)
	}

	// Assertions verify with the registered key; the counter rises.
	allow := []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: []byte("not ours")}, {Type: ctap2.CredentialType, ID: id}}
	var last uint32
	for i, cdh := range []string{"ga1", "ga2"} {
		all, err := c.GetAssertions(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: hash(cdh), AllowList: allow})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || !slices.Equal(all[0].Credential.ID, id) {
			t.Fatalf("assertions %+v", all)
		}
		if err := all[0].Verify(key, hash(cdh)); err != nil {
			t.Fatalf("assertion %d: %v", i, err)
		}
		ad, err := all[0].ParseAuthData()
		if err != nil {
			t.Fatal(err)
		}
		if ad.Flags&ctap2.FlagUP == 0 || ad.Flags&ctap2.FlagUV != 0 {
			t.Errorf("flags %v", ad.Flags)
		}
		if i > 0 && ad.SignCount <= last {
			t.Errorf("sign count %d after %d", ad.SignCount, last)
		}
		last = ad.SignCount
	}

	// up=false signs without presence (U2F don't-enforce).
	ga, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: hash("silent"), AllowList: allow[1:],
		Options: &ctap2.Options{UP: ctap2.Bool(false)}})
	if err != nil {
		t.Fatal(err)
	}
	if ad, _ := ga.ParseAuthData(); ad == nil || ad.Flags&ctap2.FlagUP != 0 {
		t.Errorf("up=false assertion: %+v", ad)
	}
	if err := ga.Verify(key, hash("silent")); err != nil {
		t.Error(err)
	}

	// The credential is not the other RP's; no allowList means no credentials.
	if _, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "other.example", ClientDataHash: hash("x"), AllowList: allow}); !errors.Is(err, ctap2.ErrNoCredentials) {
		t.Errorf("other RP: %v", err)
	}
	if _, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: hash("x")}); !errors.Is(err, ctap2.ErrNoCredentials) {
		t.Errorf("no allowList: %v", err)
	}
	// excludeList works through check-only.
	ex := u2fMCReq("example.com", "mc2")
	ex.ExcludeList = allow
	if _, err := c.MakeCredential(ctx, ex); !errors.Is(err, ctap2.ErrCredentialExcluded) {
		t.Errorf("excluded: %v", err)
	}

	// What U2F cannot do is refused before anything is sent.
	msgs := dev.msg.Load()
	refused := []struct {
		name string
		call func() error
		want error
	}{
		{"mc rk", func() error {
			r := u2fMCReq("example.com", "x")
			r.Options = &ctap2.Options{RK: ctap2.Bool(true)}
			_, err := c.MakeCredential(ctx, r)
			return err
		}, ctap2.ErrUnsupportedOption},
		{"mc uv", func() error {
			r := u2fMCReq("example.com", "x")
			r.Options = &ctap2.Options{UV: ctap2.Bool(true)}
			_, err := c.MakeCredential(ctx, r)
			return err
		}, ctap2.ErrUnsupportedOption},
		{"mc pinUvAuthParam", func() error {
			r := u2fMCReq("example.com", "x")
			r.PinUvAuthParam, r.PinUvAuthProtocol = make([]byte, 16), 1
			_, err := c.MakeCredential(ctx, r)
			return err
		}, ctap2.ErrUnsupportedOption},
		{"mc extension", func() error {
			r := u2fMCReq("example.com", "x")
			r.Extensions, _ = (&ctap2.MakeCredentialExtensions{HMACSecret: true}).Map()
			_, err := c.MakeCredential(ctx, r)
			return err
		}, ctap2.ErrUnsupportedExtension},
		{"mc eddsa only", func() error {
			_, err := c.MakeCredential(ctx, u2fMCReq("example.com", "x", ctap2.AlgEdDSA))
			return err
		}, ctap2.ErrUnsupportedAlgorithm},
		{"mc enterprise attestation", func() error {
			r := u2fMCReq("example.com", "x")
			r.EnterpriseAttestation = 1
			_, err := c.MakeCredential(ctx, r)
			return err
		}, ctap2.ErrInvalidParameter},
		{"ga rk", func() error {
			_, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: hash("x"), AllowList: allow,
				Options: &ctap2.Options{RK: ctap2.Bool(true)}})
			return err
		}, ctap2.ErrUnsupportedOption},
		{"ga uv", func() error {
			_, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: hash("x"), AllowList: allow,
				Options: &ctap2.Options{UV: ctap2.Bool(true)}})
			return err
		}, ctap2.ErrUnsupportedOption},
		{"ga extension", func() error {
			ext, _ := (&ctap2.GetAssertionExtensions{CredBlob: true}).Map()
			_, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: hash("x"), AllowList: allow, Extensions: ext})
			return err
		}, ctap2.ErrUnsupportedExtension},
		{"getNextAssertion", func() error { _, err := c.GetNextAssertion(ctx); return err }, ctap2.ErrU2FOnly},
		{"clientPIN", func() error { return c.Call(ctx, ctap2.CmdClientPIN, nil, nil) }, ctap2.ErrU2FOnly},
		{"credentialManagement", func() error { return c.Call(ctx, ctap2.CmdCredentialManagement, nil, nil) }, ctap2.ErrU2FOnly},
		{"reset", func() error { return c.Reset(ctx) }, ctap2.ErrU2FOnly},
		{"selection", func() error { return c.Selection(ctx) }, ctap2.ErrU2FOnly},
	}
	for _, r := range refused {
		err := r.call()
		if !errors.Is(err, r.want) {
			t.Errorf("%s: %v, want %v", r.name, err, r.want)
		}
		if r.want == ctap2.ErrU2FOnly && !errors.Is(err, ctap2.ErrInvalidCommand) {
			t.Errorf("%s: %v does not match ErrInvalidCommand", r.name, err)
		}
	}
	if n := dev.msg.Load(); n != msgs {
		t.Errorf("%d U2F messages sent for refused requests", n-msgs)
	}
	if n := dev.cbor.Load(); n != 0 {
		t.Errorf("%d CBOR messages sent to a U2F-only key", n)
	}
}

// TestU2FFallbackGetInfoFails: a device that does not report CTAPHID capabilities
// (or claims CBOR) and answers getInfo with ERR_INVALID_CMD is U2F-only once its U2F
// VERSION answers; the decision is made once.
func TestU2FFallbackGetInfoFails(t *testing.T) {
	dev := &countingDevice{Device: openU2FSoftkey(t, true)}
	c := ctap2.NewClient(dev, ctap2.WithU2FFallback(ctap1.NewClient(dev, ctap1.WithPollInterval(5*time.Millisecond))))
	ctx := context.Background()
	req := u2fMCReq("example.com", "mc")
	mc, err := c.MakeCredential(ctx, req) // decides with getInfo first
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mc.VerifyAttestation(req.ClientDataHash); err != nil {
		t.Fatal(err)
	}
	if !c.U2FOnly(ctx) {
		t.Error("U2FOnly = false")
	}
	info, err := c.GetInfo(ctx)
	if err != nil || !info.HasVersion(ctap2.U2FVersion) {
		t.Errorf("GetInfo = %+v, %v", info, err)
	}
	id, key, _ := mc.CredentialKey()
	ga, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: hash("ga"),
		AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: id}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := ga.Verify(key, hash("ga")); err != nil {
		t.Error(err)
	}
	if n := dev.cbor.Load(); n != 1 {
		t.Errorf("%d CBOR messages, want the one getInfo", n)
	}

	// Without a fallback the failed getInfo is just an error.
	plain := ctap2.NewClient(dev)
	if _, err := plain.GetInfo(ctx); !errors.Is(err, transport.ErrUnsupportedCommand) {
		t.Errorf("no fallback: %v", err)
	}
	if plain.U2FOnly(ctx) {
		t.Error("U2FOnly without a fallback after a failed getInfo")
	}
}

// fakeDevice answers every CBOR message with cbor (status byte first) and every MSG
// with msg.
type fakeDevice struct {
	cbor    []byte
	cborErr error
	cbors   int
}

func (d *fakeDevice) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	if cmd != transport.CmdCBOR {
		return nil, errors.New("fakeDevice: CBOR only")
	}
	d.cbors++
	return d.cbor, d.cborErr
}
func (d *fakeDevice) Info() transport.DeviceInfo { return transport.DeviceInfo{} }
func (d *fakeDevice) Close() error               { return nil }

// fakeFallback records the requests handed to it.
type fakeFallback struct {
	mc, ga int
}

func (f *fakeFallback) MakeCredential(ctx context.Context, req *ctap2.MakeCredentialRequest) (*ctap2.MakeCredentialResponse, error) {
	f.mc++
	return nil, ctap2.ErrOperationDenied
}

func (f *fakeFallback) GetAssertion(ctx context.Context, req *ctap2.GetAssertionRequest) (*ctap2.GetAssertionResponse, error) {
	f.ga++
	return &ctap2.GetAssertionResponse{AuthData: make([]byte, 37), Signature: []byte{1}}, nil
}

// versionFallback also answers U2F VERSION.
type versionFallback struct {
	fakeFallback
	version string
	err     error
}

func (f *versionFallback) Version(ctx context.Context) (string, error) { return f.version, f.err }

func TestU2FFallbackGetInfoFailsFake(t *testing.T) {
	ctx := context.Background()
	invalidCommand := []byte{byte(ctap2.ErrInvalidCommand)}
	cases := []struct {
		name     string
		dev      *fakeDevice
		fallback ctap2.U2FFallback
		u2f      bool
	}{
		{"status INVALID_COMMAND", &fakeDevice{cbor: invalidCommand}, &fakeFallback{}, true},
		{"CTAPHID ERR_INVALID_CMD", &fakeDevice{cborErr: errors.Join(errors.New("CBOR"), transport.ErrUnsupportedCommand)}, &fakeFallback{}, true},
		{"U2F version answers", &fakeDevice{cbor: invalidCommand}, &versionFallback{version: "U2F_V2"}, true},
		{"U2F version fails", &fakeDevice{cbor: invalidCommand}, &versionFallback{err: ctap2.ErrInvalidCommand}, false},
		{"U2F version other", &fakeDevice{cbor: invalidCommand}, &versionFallback{version: "U2F_V1"}, false},
		{"no fallback", &fakeDevice{cbor: invalidCommand}, nil, false},
		{"other status", &fakeDevice{cbor: []byte{byte(ctap2.ErrInvalidCBOR)}}, &fakeFallback{}, false},
		{"timeout", &fakeDevice{cborErr: transport.ErrTimeout}, &fakeFallback{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []ctap2.ClientOption
			if tc.fallback != nil {
				opts = append(opts, ctap2.WithU2FFallback(tc.fallback))
			}
			c := ctap2.NewClient(tc.dev, opts...)
			info, err := c.Info(ctx)
			if tc.u2f != (err == nil) {
				t.Fatalf("Info = %+v, %v", info, err)
			}
			if c.U2FOnly(ctx) != tc.u2f {
				t.Errorf("U2FOnly = %v", !tc.u2f)
			}
			if !tc.u2f {
				return
			}
			if !slices.Equal(info.Versions, []string{"U2F_V2"}) {
				t.Errorf("versions %v", info.Versions)
			}
			// Requests go to the fallback; nothing more is sent over CBOR.
			if _, err := c.MakeCredential(ctx, u2fMCReq("example.com", "x")); !errors.Is(err, ctap2.ErrOperationDenied) {
				t.Errorf("MakeCredential: %v", err)
			}
			ga, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: hash("x"),
				AllowList: []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: []byte("id")}}})
			if err != nil || string(ga.Credential.ID) != "id" {
				t.Errorf("GetAssertion: %+v, %v (credential filled in from the allowList)", ga, err)
			}
			var f *fakeFallback
			switch fb := tc.fallback.(type) {
			case *fakeFallback:
				f = fb
			case *versionFallback:
				f = &fb.fakeFallback
			}
			if f.mc != 1 || f.ga != 1 {
				t.Errorf("fallback saw %d makeCredential, %d getAssertion", f.mc, f.ga)
			}
			if tc.dev.cbors != 1 {
				t.Errorf("%d CBOR messages, want the one getInfo", tc.dev.cbors)
			}
		})
	}
}

// TestU2FFallbackCTAP2Key: with a fallback set, a CTAP2 key is still used over CTAP2.
func TestU2FFallbackCTAP2Key(t *testing.T) {
	dev := openU2FSoftkey(t, false)
	f := &fakeFallback{}
	c := ctap2.NewClient(dev, ctap2.WithU2FFallback(f))
	ctx := context.Background()
	mc, err := c.MakeCredential(ctx, u2fMCReq("example.com", "mc"))
	if err != nil {
		t.Fatal(err)
	}
	if mc.Fmt == ctap2.FormatFIDOU2F || f.mc != 0 {
		t.Errorf("fmt %q, fallback used %d times", mc.Fmt, f.mc)
	}
	if c.U2FOnly(ctx) {
		t.Error("U2FOnly for a CTAP2 key")
	}
	info, err := c.Info(ctx)
	if err != nil || info.HasVersion(ctap2.U2FVersion) && !info.HasVersion("FIDO_2_0") {
		t.Errorf("Info = %+v, %v", info, err)
	}
}

// TestU2FOnlyWithoutFallback: a key without the CBOR capability is known to be U2F
// only even without a fallback; its Info says so and CTAP2 commands fail clearly.
func TestU2FOnlyWithoutFallback(t *testing.T) {
	dev := &countingDevice{Device: openU2FSoftkey(t, true)}
	c := ctap2.NewClient(withCaps{dev})
	ctx := context.Background()
	info, err := c.GetInfo(ctx)
	if err != nil || !slices.Equal(info.Versions, []string{"U2F_V2"}) {
		t.Fatalf("GetInfo = %+v, %v", info, err)
	}
	if _, err := c.MakeCredential(ctx, u2fMCReq("example.com", "x")); !errors.Is(err, ctap2.ErrU2FOnly) {
		t.Errorf("MakeCredential: %v", err)
	}
	if _, err := c.GetAssertion(ctx, &ctap2.GetAssertionRequest{RPID: "example.com", ClientDataHash: hash("x")}); !errors.Is(err, ctap2.ErrU2FOnly) {
		t.Errorf("GetAssertion: %v", err)
	}
	if dev.cbor.Load() != 0 || dev.msg.Load() != 0 {
		t.Errorf("sent %d CBOR, %d MSG", dev.cbor.Load(), dev.msg.Load())
	}
}
