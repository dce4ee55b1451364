package ctap2

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ctapkit/ctapkit/transport"
)

// exchange is one scripted request and its reply. want, when set, is the exact request
// (command byte and CBOR); reply is the whole response (status byte and body).
type exchange struct {
	want  []byte
	reply []byte
}

// scriptDevice is a transport.Device that expects exactly its script, in order.
type scriptDevice struct {
	t      testing.TB
	script []exchange
	n      int
	sent   [][]byte
}

func (d *scriptDevice) Transact(_ context.Context, cmd transport.Command, data []byte) ([]byte, error) {
	d.t.Helper()
	if cmd != transport.CmdCBOR {
		d.t.Errorf("request sent as %v, want CBOR", cmd)
	}
	d.sent = append(d.sent, bytes.Clone(data))
	if d.n >= len(d.script) {
		d.t.Errorf("unexpected request %d: %x", d.n+1, data)
		return nil, errors.New("script device: no more exchanges")
	}
	ex := d.script[d.n]
	d.n++
	if ex.want != nil && !bytes.Equal(data, ex.want) {
		d.t.Errorf("request %d:\n got  %x\n want %x", d.n, data, ex.want)
	}
	return bytes.Clone(ex.reply), nil
}

func (d *scriptDevice) Info() transport.DeviceInfo {
	return transport.DeviceInfo{URI: "script:test", Transport: "script"}
}

func (d *scriptDevice) Close() error { return nil }

// done checks that every scripted exchange happened.
func (d *scriptDevice) done() {
	d.t.Helper()
	if d.n != len(d.script) {
		d.t.Errorf("%d of %d scripted requests were sent", d.n, len(d.script))
	}
}

// ok is a successful reply with body (no body: a bare status byte).
func okReply(body []byte) []byte { return append([]byte{0}, body...) }

func statusReply(s StatusError) []byte { return []byte{byte(s)} }

// infoReply is a getInfo reply body with these options and maxMsgSize (0: absent).
func infoReply(t testing.TB, maxMsgSize uint, options ...string) []byte {
	t.Helper()
	opts := map[string]bool{}
	for _, o := range options {
		opts[o] = true
	}
	return mustCBOR(t, map[int]any{1: []string{"FIDO_2_0", "FIDO_2_1"}, 3: make([]byte, 16), 4: opts, 5: maxMsgSize})
}

// scriptClient is a Client whose device first answers getInfo with infoBody, then
// follows script.
func scriptClient(t testing.TB, infoBody []byte, script ...exchange) (*Client, *scriptDevice) {
	t.Helper()
	all := append([]exchange{{want: []byte{0x04}, reply: okReply(infoBody)}}, script...)
	d := &scriptDevice{t: t, script: all}
	return NewClient(d), d
}

var (
	cmToken1 = &PINToken{Protocol: PINProtocolOne{}, Token: bytes.Repeat([]byte{0x5a}, 32)}
	cmToken2 = &PINToken{Protocol: PINProtocolTwo{}, Token: bytes.Repeat([]byte{0xa5}, 32)}
)

// hmacParam is pinUvAuthParam computed without PINProtocol: HMAC-SHA-256, truncated
// to 16 bytes for protocol 1.
func hmacParam(tok *PINToken, msg []byte) []byte {
	m := hmac.New(sha256.New, tok.Token)
	m.Write(msg)
	sum := m.Sum(nil)
	if tok.Protocol.Version() == 1 {
		return sum[:16]
	}
	return sum
}

// paramHex is the CBOR byte string of the param, in hex: 50 (16 bytes) or 58 20.
func paramHex(tok *PINToken, msg []byte) string {
	p := hmacParam(tok, msg)
	if len(p) == 16 {
		return "50" + hex.EncodeToString(p)
	}
	return "5820" + hex.EncodeToString(p)
}

func joinHex(s string) string { return strings.Join(strings.Fields(s), "") }

var (
	hashA = bytes.Repeat([]byte{0xaa}, 32)
	hashB = bytes.Repeat([]byte{0xbb}, 32)
	hashC = bytes.Repeat([]byte{0xcc}, 32)
)

func TestCredsMetadata(t *testing.T) {
	for _, tok := range []*PINToken{cmToken1, cmToken2} {
		// a3 01 01 (getCredsMetadata) 03 <protocol> 04 <param over 0x01 alone>
		want := unhex(fmt.Sprintf("0a a3 01 01 03 %02x 04", tok.Protocol.Version()) + paramHex(tok, []byte{0x01}))
		c, d := scriptClient(t, infoReply(t, 0, "credMgmt"),
			exchange{want, okReply(mustCBOR(t, map[int]uint{1: 0, 2: 25}))})
		md, err := c.CredsMetadata(context.Background(), tok)
		if err != nil {
			t.Fatal(err)
		}
		if *md != (CredsMetadata{Existing: 0, MaxRemaining: 25}) {
			t.Errorf("metadata %+v", md)
		}
		d.done()
	}
	// Both counts are required.
	for _, reply := range []map[int]uint{{2: 25}, {1: 1}} {
		c, _ := scriptClient(t, infoReply(t, 0, "credMgmt"), exchange{nil, okReply(mustCBOR(t, reply))})
		if _, err := c.CredsMetadata(context.Background(), cmToken2); !errors.Is(err, ErrMalformedResponse) {
			t.Errorf("reply %v: %v", reply, err)
		}
	}
}

func rpReply(t testing.TB, id string, hash []byte, total uint) []byte {
	m := map[int]any{3: map[string]string{"id": id}, 4: hash}
	if total > 0 {
		m[5] = total
	}
	return okReply(mustCBOR(t, m))
}

func TestEnumerateRPs(t *testing.T) {
	begin := unhex("0a a3 01 02 03 02 04" + paramHex(cmToken2, []byte{0x02}))
	next := unhex("0a a1 01 03") // GetNext: only the subcommand, no auth
	c, d := scriptClient(t, infoReply(t, 0, "credMgmt"),
		exchange{begin, rpReply(t, "a.example", hashA, 3)},
		exchange{next, rpReply(t, "b.example", hashB, 0)},
		exchange{next, okReply(mustCBOR(t, map[int]any{3: map[string]string{"id": "c.example", "name": "C"}, 4: hashC}))})
	rps, err := c.EnumerateRPs(context.Background(), cmToken2)
	if err != nil {
		t.Fatal(err)
	}
	want := []RP{
		{RPEntity{ID: "a.example"}, hashA},
		{RPEntity{ID: "b.example"}, hashB},
		{RPEntity{ID: "c.example", Name: "C"}, hashC},
	}
	if !reflect.DeepEqual(rps, want) {
		t.Errorf("RPs\n got  %+v\n want %+v", rps, want)
	}
	d.done()
}

func TestEnumerateRPsErrors(t *testing.T) {
	ctx := context.Background()
	info := infoReply(t, 0, "credMgmt")
	// No RPs: NO_CREDENTIALS is an empty list.
	c, d := scriptClient(t, info, exchange{nil, statusReply(ErrNoCredentials)})
	rps, err := c.EnumerateRPs(ctx, cmToken1)
	if err != nil || rps == nil || len(rps) != 0 {
		t.Errorf("no RPs: %v, %v", rps, err)
	}
	d.done()
	// Other statuses are errors.
	c, _ = scriptClient(t, info, exchange{nil, statusReply(ErrPINAuthInvalid)})
	if _, err := c.EnumerateRPs(ctx, cmToken1); !errors.Is(err, ErrPINAuthInvalid) {
		t.Errorf("PIN_AUTH_INVALID: %v", err)
	}
	// A GetNext failing (e.g. NOT_ALLOWED after an interleaved command) fails the whole.
	c, _ = scriptClient(t, info, exchange{nil, rpReply(t, "a", hashA, 2)}, exchange{nil, statusReply(ErrNotAllowed)})
	if _, err := c.EnumerateRPs(ctx, cmToken1); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("GetNext NOT_ALLOWED: %v", err)
	}
	// Shape errors.
	for name, reply := range map[string][]byte{
		"no totalRPs":      rpReply(t, "a", hashA, 0),
		"short hash":       rpReply(t, "a", hashA[:31], 1),
		"no rp":            okReply(mustCBOR(t, map[int]any{4: hashA, 5: 1})),
		"non-canonical":    okReply(unhex("a3 03 a1 62 6964 61 61 04 5820" + strings.Repeat("aa", 32) + " 05 1801")),
		"wrong type of rp": okReply(mustCBOR(t, map[int]any{3: "a", 4: hashA, 5: 1})),
	} {
		c, _ := scriptClient(t, info, exchange{nil, reply})
		if _, err := c.EnumerateRPs(ctx, cmToken1); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func credReply(t testing.TB, user UserEntity, id []byte, extra map[int]any) []byte {
	m := map[int]any{
		6: user,
		7: map[string]any{"type": "public-key", "id": id},
		8: RawMessage(generatorCOSE),
	}
	for k, v := range extra {
		m[k] = v
	}
	return okReply(mustCBOR(t, m))
}

func TestEnumerateCredentials(t *testing.T) {
	// subCommandParams {1: rpIDHash}, sent and authenticated as the same bytes.
	params := "a1 01 5820" + strings.Repeat("aa", 32)
	begin := unhex("0a a4 01 04 02" + params + "03 01 04" + paramHex(cmToken1, unhex("04"+joinHex(params))))
	next := unhex("0a a1 01 05")
	alice := UserEntity{ID: []byte{1}, Name: "alice", DisplayName: "Alice"}
	bob := UserEntity{ID: []byte{2}, Name: "bob"}
	lbk := bytes.Repeat([]byte{0x4b}, 32)
	c, d := scriptClient(t, infoReply(t, 0, "credMgmt"),
		exchange{begin, credReply(t, alice, []byte{0xc1}, map[int]any{9: 2, 10: 3, 11: lbk})},
		exchange{next, credReply(t, bob, []byte{0xc2}, map[int]any{10: 1, 12: true})})
	creds, err := c.EnumerateCredentials(context.Background(), cmToken1, hashA)
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 2 {
		t.Fatalf("%d credentials", len(creds))
	}
	a, b := creds[0], creds[1]
	if !reflect.DeepEqual(a.User, alice) || !bytes.Equal(a.ID.ID, []byte{0xc1}) || a.ID.Type != "public-key" ||
		a.CredProtect != 3 || !bytes.Equal(a.LargeBlobKey, lbk) || a.ThirdPartyPayment != nil {
		t.Errorf("first credential %+v", a)
	}
	if !reflect.DeepEqual(b.User, bob) || !bytes.Equal(b.ID.ID, []byte{0xc2}) || b.CredProtect != 1 ||
		b.LargeBlobKey != nil || b.ThirdPartyPayment == nil || !*b.ThirdPartyPayment {
		t.Errorf("second credential %+v", b)
	}
	if k, err := ParseCOSEKey(a.PublicKey); err != nil || k.Alg != AlgES256 {
		t.Errorf("public key: %v, %v", k, err)
	}
	d.done()
}

func TestEnumerateCredentialsErrors(t *testing.T) {
	ctx := context.Background()
	info := infoReply(t, 0, "credMgmt")
	c, d := scriptClient(t, info, exchange{nil, statusReply(ErrNoCredentials)})
	creds, err := c.EnumerateCredentials(ctx, cmToken2, hashB)
	if err != nil || creds == nil || len(creds) != 0 {
		t.Errorf("no credentials: %v, %v", creds, err)
	}
	d.done()
	user := UserEntity{ID: []byte{1}}
	for name, reply := range map[string][]byte{
		"no total":          credReply(t, user, []byte{1}, nil),
		"no public key":     okReply(mustCBOR(t, map[int]any{6: user, 7: map[string]any{"type": "public-key", "id": []byte{1}}, 9: 1})),
		"no user":           okReply(mustCBOR(t, map[int]any{7: map[string]any{"type": "public-key", "id": []byte{1}}, 8: RawMessage{0xa0}, 9: 1})),
		"credProtect 4":     credReply(t, user, []byte{1}, map[int]any{9: 1, 10: 4}),
		"short blob key":    credReply(t, user, []byte{1}, map[int]any{9: 1, 11: make([]byte, 31)}),
		"empty credential":  credReply(t, user, []byte{}, map[int]any{9: 1}),
		"status PUAT_REQ'D": statusReply(ErrPUATRequired),
	} {
		c, _ := scriptClient(t, info, exchange{nil, reply})
		if _, err := c.EnumerateCredentials(ctx, cmToken2, hashB); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// A wrong-size hash is refused before anything is sent (getInfo included).
	d = &scriptDevice{t: t}
	if _, err := NewClient(d).EnumerateCredentials(ctx, cmToken2, hashB[:20]); err == nil {
		t.Error("20-byte rpIDHash accepted")
	}
}

func TestDeleteAndUpdateCredential(t *testing.T) {
	ctx := context.Background()
	id := []byte{0xde, 0xad}
	// {2: {"id": h'dead', "type": "public-key"}}: text keys in length-first order.
	desc := "a2 62 6964 42 dead 64 74797065 6a 7075626c69632d6b6579"
	del := "a1 02" + desc
	upd := "a2 02" + desc + "03 a3 62 6964 41 07 64 6e616d65 63 626f62 6b 646973706c61794e616d65 63 426f62"
	c, d := scriptClient(t, infoReply(t, 0, "credMgmt"),
		exchange{unhex("0a a4 01 06 02" + del + "03 02 04" + paramHex(cmToken2, unhex("06"+joinHex(del)))), okReply(nil)},
		exchange{unhex("0a a4 01 07 02" + upd + "03 01 04" + paramHex(cmToken1, unhex("07"+joinHex(upd)))), okReply(nil)},
		exchange{nil, statusReply(ErrNoCredentials)})
	if err := c.DeleteCredential(ctx, cmToken2, id); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateUserInformation(ctx, cmToken1, id, UserEntity{ID: []byte{7}, Name: "bob", DisplayName: "Bob"}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteCredential(ctx, cmToken2, id); !errors.Is(err, ErrNoCredentials) {
		t.Errorf("deleting an unknown credential: %v", err)
	}
	d.done()
	// Refused locally: no token, empty ID, bad user ID.
	for name, f := range map[string]func() error{
		"delete without token": func() error { return c.DeleteCredential(ctx, nil, id) },
		"delete empty id":      func() error { return c.DeleteCredential(ctx, cmToken2, nil) },
		"update empty user":    func() error { return c.UpdateUserInformation(ctx, cmToken2, id, UserEntity{}) },
		"update 65-byte user":  func() error { return c.UpdateUserInformation(ctx, cmToken2, id, UserEntity{ID: make([]byte, 65)}) },
		"metadata w/o token":   func() error { _, err := c.CredsMetadata(ctx, nil); return err },
		"enumerate w/o token":  func() error { _, err := c.EnumerateRPs(ctx, nil); return err },
	} {
		if err := f(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if d.n != len(d.script) || len(d.sent) != len(d.script) {
		t.Errorf("refused calls sent requests: %x", d.sent[len(d.script):])
	}
}

// TestCredMgmtPrototype: CTAP 2.1-PRE keys list only credentialMgmtPreview and get 0x41
// for every subcommand, GetNext included; updateUserInformation does not exist there.
func TestCredMgmtPrototype(t *testing.T) {
	ctx := context.Background()
	c, d := scriptClient(t, infoReply(t, 0, "credentialMgmtPreview"),
		exchange{unhex("41 a3 01 02 03 01 04" + paramHex(cmToken1, []byte{0x02})), rpReply(t, "a", hashA, 2)},
		exchange{unhex("41 a1 01 03"), rpReply(t, "b", hashB, 0)})
	rps, err := c.EnumerateRPs(ctx, cmToken1)
	if err != nil || len(rps) != 2 {
		t.Fatalf("%v, %v", rps, err)
	}
	err = c.UpdateUserInformation(ctx, cmToken1, []byte{1}, UserEntity{ID: []byte{1}})
	if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "0x41") {
		t.Errorf("update on 0x41: %v", err)
	}
	d.done() // nothing sent for the update

	// credMgmt wins when both are listed.
	c, d = scriptClient(t, infoReply(t, 0, "credentialMgmtPreview", "credMgmt"),
		exchange{unhex("0a a3 01 01 03 01 04" + paramHex(cmToken1, []byte{0x01})), okReply(mustCBOR(t, map[int]uint{1: 1, 2: 1}))})
	if _, err := c.CredsMetadata(ctx, cmToken1); err != nil {
		t.Fatal(err)
	}
	d.done()

	// Neither (or credMgmt=false): unsupported, nothing sent after getInfo.
	off := mustCBOR(t, map[int]any{1: []string{"FIDO_2_1"}, 3: make([]byte, 16), 4: map[string]bool{"credMgmt": false}})
	for _, info := range [][]byte{infoReply(t, 0, "clientPin"), off} {
		c, d = scriptClient(t, info)
		if _, err := c.EnumerateRPs(ctx, cmToken1); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("no credMgmt: %v", err)
		}
		d.done()
	}
}

// TestCredMgmtAuthMessage checks the exported message helper the authenticator uses.
func TestCredMgmtAuthMessage(t *testing.T) {
	if got := CredMgmtAuthMessage(CredMgmtGetCredsMetadata, nil); !bytes.Equal(got, []byte{1}) {
		t.Errorf("no params: %x", got)
	}
	if got := CredMgmtAuthMessage(CredMgmtDeleteCredential, unhex("a0")); !bytes.Equal(got, unhex("06 a0")) {
		t.Errorf("params: %x", got)
	}
}

// FuzzCredMgmtResponse: any reply to any credential-management call gives a result or
// an error, never a panic; results agree with the counts the reply announced, and the
// decoded response re-encodes faithfully.
func FuzzCredMgmtResponse(f *testing.F) {
	user := UserEntity{ID: []byte{1}, Name: "a"}
	f.Add(byte(0), okReply(mustCBOR(f, map[int]uint{1: 0, 2: 25})))
	f.Add(byte(1), rpReply(f, "a.example", hashA, 2))
	f.Add(byte(1), rpReply(f, "a.example", hashA, 9))
	f.Add(byte(2), credReply(f, user, []byte{1}, map[int]any{9: 1, 10: 2, 11: hashA, 12: false}))
	f.Add(byte(2), credReply(f, user, []byte{1}, map[int]any{9: 3}))
	f.Add(byte(2), statusReply(ErrNoCredentials))
	f.Add(byte(1), []byte{})
	// Duplicate keys inside the COSE key, which the struct keeps as raw bytes.
	f.Add(byte(1), []byte("\x00\xa790080d0000j0000000000\b\xa5000000000010200070"))
	// A non-canonical COSE key inside an otherwise canonical reply.
	f.Add(byte(9), []byte("\x00\xa4\x06\xa280A0d0000A00\xa2900A0d0000j0000000000\b\xa50010207X 00000000000000000000000000000000 X\x1a0000000000000000000000000010"))
	f.Fuzz(func(t *testing.T, which byte, reply []byte) {
		// The device gives the same reply to at most 4 requests.
		dev := new(fakeDevice)
		for range 4 {
			dev.raw(reply)
		}
		c := NewClient(dev)
		c.info = &Info{Versions: []string{"FIDO_2_1"}, AAGUID: make([]byte, 16), Options: map[string]bool{"credMgmt": true}}
		ctx := context.Background()
		var first CredMgmtResponse
		// Decoded as the Client does: only canonical bodies (checked generically, so
		// raw parts such as the COSE key too), then into the struct.
		decoded := len(reply) > 1 && reply[0] == 0 && CheckCanonical(reply[1:]) == nil && Unmarshal(reply[1:], &first) == nil
		switch which % 3 {
		case 0:
			md, err := c.CredsMetadata(ctx, cmToken2)
			if err == nil && (!decoded || first.ExistingResidentCredentialsCount == nil || md.Existing != *first.ExistingResidentCredentialsCount) {
				t.Fatalf("metadata %+v from %x", md, reply)
			}
		case 1:
			rps, err := c.EnumerateRPs(ctx, cmToken2)
			if err == nil && len(rps) > 0 && (!decoded || uint(len(rps)) != first.TotalRPs) {
				t.Fatalf("%d RPs, reply announced %d", len(rps), first.TotalRPs)
			}
			for _, rp := range rps {
				if len(rp.RPIDHash) != 32 {
					t.Fatalf("RP %+v", rp)
				}
			}
		case 2:
			creds, err := c.EnumerateCredentials(ctx, cmToken2, hashA)
			if err == nil && len(creds) > 0 && (!decoded || uint(len(creds)) != first.TotalCredentials) {
				t.Fatalf("%d credentials, reply announced %d", len(creds), first.TotalCredentials)
			}
			for _, cr := range creds {
				if len(cr.ID.ID) == 0 || len(cr.PublicKey) == 0 || cr.CredProtect > 3 {
					t.Fatalf("credential %+v", cr)
				}
			}
		}
		if decoded {
			checkReencoding(t, reply[1:], &first, func() any { return new(CredMgmtResponse) })
		}
	})
}
