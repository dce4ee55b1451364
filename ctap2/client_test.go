package ctap2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/transport"
)

// fakeDevice is a transport.Device that answers from a script and records requests.
type fakeDevice struct {
	mu       sync.Mutex
	replies  []fakeReply
	requests []fakeRequest
	closed   bool
}

type fakeReply struct {
	data []byte
	err  error
	// do, when set, runs inside Transact with its context (to block, send keepalives…).
	do func(ctx context.Context) ([]byte, error)
}

type fakeRequest struct {
	cmd  transport.Command
	data []byte
	ctx  context.Context
}

func (d *fakeDevice) Transact(ctx context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	d.mu.Lock()
	d.requests = append(d.requests, fakeRequest{cmd, bytes.Clone(data), ctx})
	if len(d.replies) == 0 {
		d.mu.Unlock()
		return nil, errors.New("fake device: no scripted reply")
	}
	r := d.replies[0]
	d.replies = d.replies[1:]
	d.mu.Unlock()
	if r.do != nil {
		return r.do(ctx)
	}
	return bytes.Clone(r.data), r.err
}

func (d *fakeDevice) Info() transport.DeviceInfo {
	return transport.DeviceInfo{URI: "fake:test", Transport: "fake", Path: "test"}
}

func (d *fakeDevice) Close() error { d.closed = true; return nil }

// reply queues a successful CBOR reply: status 0x00 and body.
func (d *fakeDevice) reply(body ...[]byte) *fakeDevice {
	for _, b := range body {
		d.replies = append(d.replies, fakeReply{data: cat([]byte{0}, b)})
	}
	return d
}

func (d *fakeDevice) raw(data []byte) *fakeDevice {
	d.replies = append(d.replies, fakeReply{data: data})
	return d
}

func (d *fakeDevice) sent(t testing.TB) [][]byte {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out [][]byte
	for _, r := range d.requests {
		if r.cmd != transport.CmdCBOR {
			t.Errorf("request sent as %v, want CBOR", r.cmd)
		}
		out = append(out, r.data)
	}
	return out
}

var _ transport.Device = (*fakeDevice)(nil)

// testInfoBody is a getInfo reply body with maxMsgSize 1200 (the python-fido2 YubiKey).
func testInfoBody(t testing.TB) []byte { return golden(t, "python-fido2/info.hex") }

func TestClientGetInfo(t *testing.T) {
	dev := new(fakeDevice).reply(golden(t, "python-fido2/info_extra_key.hex"))
	c := NewClient(dev)
	if c.Device() != dev {
		t.Error("Device()")
	}
	ctx := context.Background()
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.MaxMsgSize != 1200 || !info.HasVersion("FIDO_2_0") {
		t.Errorf("info %+v", info)
	}
	// Cached: no second transaction.
	again, err := c.Info(ctx)
	if err != nil || again != info {
		t.Errorf("Info() second call = %p, %v", again, err)
	}
	if sent := dev.sent(t); len(sent) != 1 || !bytes.Equal(sent[0], []byte{0x04}) {
		t.Errorf("sent %x, want one getInfo (04)", sent)
	}
	// GetInfo always asks.
	dev.reply(testInfoBody(t))
	if _, err := c.GetInfo(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(dev.sent(t)); n != 2 {
		t.Errorf("%d requests", n)
	}
}

func TestClientGetInfoMalformed(t *testing.T) {
	for name, body := range map[string][]byte{
		"no versions":    unhex("a1 03 50 00112233445566778899aabbccddeeff"),
		"no aaguid":      unhex("a1 01 81 68 4649444f5f325f30"),
		"short aaguid":   unhex("a2 01 81 68 4649444f5f325f30 03 4f 00112233445566778899aabbccddee"),
		"empty versions": unhex("a2 01 80 03 50 00112233445566778899aabbccddeeff"),
		"empty body":     nil,
	} {
		c := NewClient(new(fakeDevice).reply(body))
		_, err := c.GetInfo(context.Background())
		if !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("%s: %v, want ErrMalformedResponse", name, err)
		}
		if _, ok := StatusOf(err); ok {
			t.Errorf("%s: a malformed reply is not a CTAP status", name)
		}
	}
}

func TestClientMakeCredentialEncoding(t *testing.T) {
	cdh := bytes.Repeat([]byte{0xcd}, 32)
	req := &MakeCredentialRequest{
		ClientDataHash:   cdh,
		RP:               &RPEntity{ID: "example.com", Name: "Example"},
		User:             &UserEntity{ID: []byte{1, 2}, Name: "alice", DisplayName: "Alice"},
		PubKeyCredParams: []CredentialParam{{Type: CredentialType, Alg: AlgES256}, {Type: CredentialType, Alg: AlgEdDSA}},
		ExcludeList:      []CredentialDescriptor{{Type: CredentialType, ID: []byte{0xaa}, Transports: []string{"usb"}}},
		Options:          &Options{RK: Bool(true)},
	}
	want := cat([]byte{0x01}, unhex(`a6
		01 5820`), cdh, unhex(`
		02 a2 62 6964 6b 6578616d706c652e636f6d
		      64 6e616d65 67 4578616d706c65
		03 a3 62 6964 42 0102
		      64 6e616d65 65 616c696365
		      6b 646973706c61794e616d65 65 416c696365
		04 82 a2 63 616c67 26 64 74797065 6a 7075626c69632d6b6579
		      a2 63 616c67 27 64 74797065 6a 7075626c69632d6b6579
		05 81 a3 62 6964 41 aa 64 74797065 6a 7075626c69632d6b6579 6a 7472616e73706f727473 81 63 757362
		07 a1 62 726b f5`))

	dev := new(fakeDevice).reply(golden(t, "python-fido2/mc_resp_packed_yubikey.hex"))
	resp, err := NewClient(dev).MakeCredential(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if sent := dev.sent(t); len(sent) != 1 || !bytes.Equal(sent[0], want) {
		t.Fatalf("sent %x\nwant %x", sent, want)
	}
	if resp.Fmt != FormatPacked || len(resp.AuthData) != 196 || resp.EpAtt || resp.LargeBlobKey != nil {
		t.Errorf("response %+v", resp)
	}
	if _, err := resp.VerifyAttestation(unhex("985B6187D042FB1258892ED637CEC88617DDF5F6632351A545617AA2B75261BF")); err != nil {
		t.Errorf("real YubiKey response does not verify after the Client decoded it: %v", err)
	}
	if got := mustCBOR(t, resp); !bytes.Equal(got, golden(t, "python-fido2/mc_resp_packed_yubikey.hex")) {
		t.Error("decoded makeCredential response does not re-encode to the same bytes")
	}

	// The CTAP 2.0 touch probe: a zero-length pinUvAuthParam is sent (8: h''), not
	// dropped; options with up=false and uv=true keep their order rk < up < uv.
	probe := &MakeCredentialRequest{
		ClientDataHash: cdh, RP: &RPEntity{ID: ".dummy"}, User: &UserEntity{ID: []byte{1}},
		PubKeyCredParams: []CredentialParam{{Type: CredentialType, Alg: AlgES256}},
		Options:          &Options{UV: Bool(true), UP: Bool(false), RK: Bool(false)},
		PinUvAuthParam:   []byte{}, PinUvAuthProtocol: 1,
	}
	dev = new(fakeDevice).raw([]byte{byte(ErrPINNotSet)})
	_, err = NewClient(dev).MakeCredential(context.Background(), probe)
	if !errors.Is(err, ErrPINNotSet) {
		t.Errorf("err = %v, want CTAP2_ERR_PIN_NOT_SET", err)
	}
	tail := unhex("07 a3 62 726b f4 62 7570 f4 62 7576 f5 08 40 09 01")
	if sent := dev.sent(t); len(sent) != 1 || !bytes.HasSuffix(sent[0], tail) || sent[0][1] != 0xa7 {
		t.Errorf("probe sent %x, want a 7-entry map ending %x", sent, tail)
	}
}

func TestClientGetAssertionEncoding(t *testing.T) {
	cdh := bytes.Repeat([]byte{0x11}, 32)
	credID := unhex(`fe3aac036d14c1e1c65518b698dd1da8f596bc33e11072813466c6bf3845691509b80fb76d59309b
		8d39e0a93452688f6ca3a39a76f3fc52744fb73948b15783`)
	req := &GetAssertionRequest{
		RPID: "example.com", ClientDataHash: cdh,
		AllowList:  []CredentialDescriptor{{Type: CredentialType, ID: credID}},
		Extensions: map[string]RawMessage{"hmac-secret": unhex("a0"), "credBlob": unhex("f5")},
		Options:    &Options{UP: Bool(false)},
	}
	want := cat(unhex(`02 a5
		01 6b 6578616d706c652e636f6d
		02 5820`), cdh, unhex(`
		03 81 a2 62 6964 5840`), credID, unhex(`64 74797065 6a 7075626c69632d6b6579
		04 a2 68 63726564426c6f62 f5 6b 686d61632d736563726574 a0
		05 a1 62 7570 f4`))
	dev := new(fakeDevice).reply(golden(t, "python-fido2/ga_resp.hex"))
	resp, err := NewClient(dev).GetAssertion(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if sent := dev.sent(t); len(sent) != 1 || !bytes.Equal(sent[0], want) {
		t.Fatalf("sent %x\nwant %x", sent, want)
	}
	if !bytes.Equal(resp.Credential.ID, credID) || resp.NumberOfCredentials != 0 || resp.User != nil {
		t.Errorf("response %+v", resp)
	}
	if !bytes.Equal(resp.AuthData, golden(t, "python-fido2/authdata_ga.hex")) {
		t.Errorf("authData %x", resp.AuthData)
	}
}

// assertionBody is a getAssertion reply for credential id with the given extra fields.
func assertionBody(t testing.TB, id byte, n uint, user *UserEntity) []byte {
	return mustCBOR(t, GetAssertionResponse{
		Credential: &CredentialDescriptor{Type: CredentialType, ID: []byte{id}},
		AuthData:   (&AuthData{RPIDHash: RPIDHash("example.com"), Flags: FlagUP, SignCount: uint32(id)}).Marshal(),
		Signature:  []byte{0x30, id}, User: user, NumberOfCredentials: n,
	})
}

func TestClientGetAssertionFillsCredential(t *testing.T) {
	body := mustCBOR(t, GetAssertionResponse{AuthData: golden(t, "python-fido2/authdata_ga.hex"), Signature: []byte{1}})
	req := &GetAssertionRequest{RPID: "example.com", ClientDataHash: make([]byte, 32),
		AllowList: []CredentialDescriptor{{Type: CredentialType, ID: []byte{9, 9}, Transports: []string{"nfc"}}}}
	resp, err := NewClient(new(fakeDevice).reply(body)).GetAssertion(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Credential == nil || !bytes.Equal(resp.Credential.ID, []byte{9, 9}) || resp.Credential.Type != CredentialType {
		t.Errorf("credential %+v", resp.Credential)
	}
	// With two allowed credentials the authenticator must say which one it used.
	req.AllowList = append(req.AllowList, CredentialDescriptor{Type: CredentialType, ID: []byte{8}})
	_, err = NewClient(new(fakeDevice).reply(body)).GetAssertion(context.Background(), req)
	if !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("missing credential with two allowed: %v", err)
	}
}

func TestClientGetAssertions(t *testing.T) {
	ctx := context.Background()
	req := &GetAssertionRequest{RPID: "example.com", ClientDataHash: make([]byte, 32)}
	users := []*UserEntity{{ID: []byte{1}}, {ID: []byte{2}, Name: "b"}, {ID: []byte{3}}}

	dev := new(fakeDevice).reply(assertionBody(t, 1, 3, users[0]), assertionBody(t, 2, 0, users[1]), assertionBody(t, 3, 0, users[2]))
	all, err := NewClient(dev).GetAssertions(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 {
		t.Fatalf("%d assertions", len(all))
	}
	for i, a := range all {
		if a.Credential.ID[0] != byte(i+1) || !bytes.Equal(a.User.ID, users[i].ID) {
			t.Errorf("assertion %d: %+v", i, a)
		}
	}
	sent := dev.sent(t)
	if len(sent) != 3 || sent[0][0] != 0x02 || !bytes.Equal(sent[1], []byte{0x08}) || !bytes.Equal(sent[2], []byte{0x08}) {
		t.Errorf("sent %x, want getAssertion then two bare getNextAssertion (08)", sent)
	}

	// One credential, numberOfCredentials absent or 1: no getNextAssertion.
	for _, n := range []uint{0, 1} {
		dev = new(fakeDevice).reply(assertionBody(t, 1, n, nil))
		all, err = NewClient(dev).GetAssertions(ctx, req)
		if err != nil || len(all) != 1 || len(dev.sent(t)) != 1 {
			t.Errorf("numberOfCredentials %d: %d assertions, %d requests, %v", n, len(all), len(dev.sent(t)), err)
		}
	}

	// The authenticator gives up halfway: the ones so far and the status come back.
	dev = new(fakeDevice).reply(assertionBody(t, 1, 3, nil), assertionBody(t, 2, 0, nil)).raw([]byte{byte(ErrNotAllowed)})
	all, err = NewClient(dev).GetAssertions(ctx, req)
	if !errors.Is(err, ErrNotAllowed) || len(all) != 2 {
		t.Errorf("partial: %d assertions, %v", len(all), err)
	}
	if err != nil && !strings.Contains(err.Error(), "assertion 3 of 3") {
		t.Errorf("error %q does not say which assertion failed", err)
	}

	// A malformed getNextAssertion reply.
	dev = new(fakeDevice).reply(assertionBody(t, 1, 2, nil), mustCBOR(t, GetAssertionResponse{AuthData: []byte{1}}))
	if _, err = NewClient(dev).GetAssertions(ctx, req); !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("malformed next: %v", err)
	}

	// The first call fails: nothing is returned.
	dev = new(fakeDevice).raw([]byte{byte(ErrNoCredentials)})
	all, err = NewClient(dev).GetAssertions(ctx, req)
	if !errors.Is(err, ErrNoCredentials) || all != nil {
		t.Errorf("no credentials: %v, %v", all, err)
	}
}

func TestClientStatusErrors(t *testing.T) {
	ctx := context.Background()
	for _, s := range []StatusError{ErrInvalidCommand, ErrInvalidCBOR, ErrNoCredentials, ErrPINInvalid, ErrOperationDenied, ErrKeepaliveCancel, 0xF2, 0xE1} {
		for _, extra := range [][]byte{nil, unhex("a0"), unhex("ff ff")} {
			dev := new(fakeDevice).raw(cat([]byte{byte(s)}, extra))
			var info Info
			err := NewClient(dev).Call(ctx, CmdGetInfo, nil, &info)
			got, ok := StatusOf(err)
			if !ok || got != s {
				t.Errorf("status 0x%02X with %x: StatusOf(%v) = 0x%02X, %v", byte(s), extra, err, byte(got), ok)
			}
			if !errors.Is(err, s) {
				t.Errorf("errors.Is(%v, %v) = false", err, s)
			}
		}
	}
	// Selection and Reset map the user's refusal onto the status.
	if err := NewClient(new(fakeDevice).raw([]byte{byte(ErrOperationDenied)})).Selection(ctx); !errors.Is(err, ErrOperationDenied) {
		t.Errorf("Selection: %v", err)
	}
	if err := NewClient(new(fakeDevice).raw([]byte{byte(ErrNotAllowed)})).Reset(ctx); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Reset: %v", err)
	}
}

func TestClientNoParameterCommands(t *testing.T) {
	ctx := context.Background()
	dev := new(fakeDevice).raw([]byte{0}).raw([]byte{0})
	c := NewClient(dev)
	if err := c.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Selection(ctx); err != nil {
		t.Fatal(err)
	}
	if sent := dev.sent(t); len(sent) != 2 || !bytes.Equal(sent[0], []byte{0x07}) || !bytes.Equal(sent[1], []byte{0x0b}) {
		t.Errorf("sent %x, want 07 and 0b", sent)
	}
}

func TestClientRejectsBadReplies(t *testing.T) {
	ctx := context.Background()
	info := testInfoBody(t)
	for _, tc := range []struct {
		name  string
		reply []byte
		is    error // nil: any error
	}{
		{"empty reply", nil, ErrMalformedResponse},
		{"keys out of order", unhex("00 a2 03 50 00112233445566778899aabbccddeeff 01 81 68 4649444f5f325f30"), ErrNonCanonical},
		{"int not shortest", cat([]byte{0}, bytes.Replace(info, unhex("051904b0"), unhex("051a000004b0"), 1)), ErrNonCanonical},
		{"length-first key order", cat([]byte{0}, unhex("a3 01 81 68 4649444f5f325f30 03 50 00112233445566778899aabbccddeeff 04 a2 64 706c6174 f4 62 726b f5")), ErrNonCanonical},
		{"duplicate key", cat(unhex("00 a7"), info[1:], unhex("068101")), nil},
		{"truncated", cat([]byte{0}, info[:len(info)-1]), nil},
		{"trailing bytes", cat([]byte{0}, info, []byte{0}), nil},
		{"indefinite map", cat([]byte{0}, unhex("bf 01 81 68 4649444f5f325f30 ff")), nil},
		{"tag", cat([]byte{0}, unhex("c0 a0")), nil},
		{"wrong type", cat([]byte{0}, unhex("a2 01 01 03 50 00112233445566778899aabbccddeeff")), nil},
		{"not a map", cat([]byte{0}, unhex("80")), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := new(fakeDevice).raw(tc.reply)
			_, err := NewClient(dev).GetInfo(ctx)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want %v", err, tc.is)
			}
			if _, ok := StatusOf(err); ok {
				t.Errorf("a bad reply reported as a CTAP status: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "getInfo") {
				t.Errorf("error %q does not name the command", err)
			}
		})
	}
}

func TestClientMalformedResponses(t *testing.T) {
	ctx := context.Background()
	ad := golden(t, "python-fido2/authdata_mc.hex")
	mcReq := &MakeCredentialRequest{ClientDataHash: make([]byte, 32)}
	for name, resp := range map[string]MakeCredentialResponse{
		"no fmt":      {AuthData: ad, AttStmt: unhex("a0")},
		"no authData": {Fmt: FormatNone, AttStmt: unhex("a0")},
		"no attStmt":  {Fmt: FormatNone, AuthData: ad},
	} {
		_, err := NewClient(new(fakeDevice).reply(mustCBOR(t, resp))).MakeCredential(ctx, mcReq)
		if !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("makeCredential %s: %v", name, err)
		}
	}
	if _, err := NewClient(new(fakeDevice).reply(nil)).MakeCredential(ctx, mcReq); !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("makeCredential with an empty body: %v", err)
	}

	gaReq := &GetAssertionRequest{RPID: "example.com", ClientDataHash: make([]byte, 32)}
	cred := &CredentialDescriptor{Type: CredentialType, ID: []byte{1}}
	for name, resp := range map[string]GetAssertionResponse{
		"no credential": {AuthData: ad[:37], Signature: []byte{1}},
		"no authData":   {Credential: cred, Signature: []byte{1}},
		"no signature":  {Credential: cred, AuthData: ad[:37]},
	} {
		body := mustCBOR(t, resp)
		if _, err := NewClient(new(fakeDevice).reply(body)).GetAssertion(ctx, gaReq); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("getAssertion %s: %v", name, err)
		}
		if _, err := NewClient(new(fakeDevice).reply(body)).GetNextAssertion(ctx); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("getNextAssertion %s: %v", name, err)
		}
	}
}

func TestClientMessageSize(t *testing.T) {
	ctx := context.Background()
	dev := new(fakeDevice).reply(testInfoBody(t)) // maxMsgSize 1200
	c := NewClient(dev)
	if _, err := c.GetInfo(ctx); err != nil {
		t.Fatal(err)
	}
	// 1 command byte + 3 bytes of byte-string header + n bytes.
	dev.raw([]byte{0})
	if err := c.Call(ctx, CmdConfig, make([]byte, 1196), nil); err != nil {
		t.Fatalf("a request of exactly maxMsgSize: %v", err)
	}
	if sent := dev.sent(t); len(sent[1]) != 1200 {
		t.Fatalf("request of %d bytes", len(sent[1]))
	}
	err := c.Call(ctx, CmdConfig, make([]byte, 1197), nil)
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Errorf("1201 bytes: %v, want CTAP2_ERR_REQUEST_TOO_LARGE", err)
	}
	if !strings.Contains(err.Error(), "1201") || !strings.Contains(err.Error(), "1200") {
		t.Errorf("message %q should give both sizes", err)
	}

	// A long exclude list trips the limit before anything is sent.
	req := &MakeCredentialRequest{ClientDataHash: make([]byte, 32), RP: &RPEntity{ID: "example.com"},
		User: &UserEntity{ID: []byte{1}}, PubKeyCredParams: []CredentialParam{{Type: CredentialType, Alg: AlgES256}}}
	for i := 0; i < 20; i++ {
		req.ExcludeList = append(req.ExcludeList, CredentialDescriptor{Type: CredentialType, ID: make([]byte, 64)})
	}
	if _, err := c.MakeCredential(ctx, req); !errors.Is(err, ErrRequestTooLarge) {
		t.Errorf("makeCredential with 20 exclusions: %v", err)
	}
	if n := len(dev.sent(t)); n != 2 {
		t.Errorf("%d requests reached the device, want 2 (getInfo and the 1200-byte one)", n)
	}

	// A key claiming an absurd maxMsgSize (2^64-1) does not make every request too large.
	huge := cat(unhex("00 a3 01 81 68 4649444f5f325f30 03 50"), testAAGUID, unhex("05 1b ffffffffffffffff"))
	c2 := NewClient(new(fakeDevice).raw(huge).raw([]byte{0}))
	if _, err := c2.GetInfo(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2.Call(ctx, CmdConfig, make([]byte, 5000), nil); err != nil {
		t.Errorf("after maxMsgSize 2^64-1: %v", err)
	}

	// A request that cannot be encoded is an error, not a panic.
	if err := c.Call(ctx, CmdConfig, make(chan int), nil); err == nil {
		t.Error("unencodable request accepted")
	}
}

func TestClientContextCancellation(t *testing.T) {
	started := make(chan struct{})
	dev := &fakeDevice{replies: []fakeReply{{do: func(ctx context.Context) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}}}}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- NewClient(dev).Selection(ctx) }()
	<-started
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if !strings.HasPrefix(err.Error(), "selection") {
			t.Errorf("error %q does not name the command", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Selection did not return after cancel")
	}

	// Deadlines and transport errors pass through the same way.
	dev = &fakeDevice{replies: []fakeReply{{do: func(ctx context.Context) ([]byte, error) { <-ctx.Done(); return nil, ctx.Err() }}}}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := NewClient(dev).GetInfo(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v", err)
	}
	dev = &fakeDevice{replies: []fakeReply{{err: fmt.Errorf("hid: %w", transport.ErrClosed)}}}
	if _, err := NewClient(dev).GetInfo(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("transport error: %v", err)
	}

	// The caller's context reaches the device (values included).
	type key struct{}
	vctx := context.WithValue(context.Background(), key{}, "v")
	dev = new(fakeDevice).raw([]byte{0})
	if err := NewClient(dev).Reset(vctx); err != nil {
		t.Fatal(err)
	}
	if dev.requests[0].ctx.Value(key{}) != "v" {
		t.Error("context values do not reach the device")
	}
}

func TestClientKeepalive(t *testing.T) {
	var got []byte
	touch := func(ctx context.Context) ([]byte, error) {
		notify := transport.KeepaliveFunc(ctx)
		notify(transport.StatusProcessing)
		notify(transport.StatusUPNeeded)
		return []byte{0}, nil
	}
	dev := &fakeDevice{replies: []fakeReply{{do: touch}, {do: touch}}}
	c := NewClient(dev, WithKeepaliveFunc(func(s byte) { got = append(got, s) }))
	if err := c.Selection(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte{transport.StatusProcessing, transport.StatusUPNeeded}) {
		t.Errorf("keepalives %v", got)
	}
	// Without the option the device sees a no-op and nothing breaks.
	if err := NewClient(dev).Selection(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestClientIgnoresBodyWithoutResponse(t *testing.T) {
	// Reset with resp == nil: a (non-canonical) body is ignored, as documented.
	dev := new(fakeDevice).raw(unhex("00 a2 02 00 01 00"))
	if err := NewClient(dev).Reset(context.Background()); err != nil {
		t.Errorf("Reset: %v", err)
	}
}

func TestClientConcurrentCalls(t *testing.T) {
	dev := new(fakeDevice)
	for i := 0; i < 16; i++ {
		dev.reply(testInfoBody(t))
	}
	c := NewClient(dev)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.GetInfo(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if info, err := c.Info(context.Background()); err != nil || info.MaxMsgSize != 1200 {
		t.Errorf("cached info %+v, %v", info, err)
	}
}
