package softkey

import (
	"bytes"
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// unhex decodes a hex literal with spaces; bad hex is a bug in the test.
func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

func TestHandleCBORFraming(t *testing.T) {
	mc := mustMarshal(t, rawMC())
	cmd := func(c ctap2.Command, params []byte) []byte { return append([]byte{byte(c)}, params...) }
	deep := bytes.Repeat([]byte{0x81}, 40) // an array nested 40 deep
	deep = append(deep, 0x00)
	tests := []struct {
		name string
		msg  []byte
		want ctap2.StatusError
	}{
		{"empty request", nil, ctap2.ErrInvalidLength},
		{"unknown command 0x55", []byte{0x55}, ctap2.ErrInvalidCommand},
		{"unknown command with params", cmd(0x55, mc), ctap2.ErrInvalidCommand},
		{"clientPIN getPINRetries", cmd(ctap2.CmdClientPIN, unhex("a2 0101 0201")), ctap2.StatusOK},
		{"clientPIN without params", cmd(ctap2.CmdClientPIN, nil), ctap2.ErrMissingParameter},
		{"credentialManagement without params", cmd(ctap2.CmdCredentialManagement, nil), ctap2.ErrMissingParameter},
		{"credentialManagement prototype without params", cmd(ctap2.CmdCredentialMgmtPre, nil), ctap2.ErrMissingParameter},
		{"bioEnrollment (not offered)", cmd(ctap2.CmdBioEnrollment, nil), ctap2.ErrInvalidCommand},
		{"bioEnrollment prototype (not offered)", cmd(ctap2.CmdBioEnrollmentPre, nil), ctap2.ErrInvalidCommand},
		{"vendor command", []byte{0xbf}, ctap2.ErrInvalidCommand},
		{"makeCredential without params", cmd(ctap2.CmdMakeCredential, nil), ctap2.ErrMissingParameter},
		{"getAssertion without params", cmd(ctap2.CmdGetAssertion, nil), ctap2.ErrMissingParameter},
		{"makeCredential with an empty map", cmd(ctap2.CmdMakeCredential, []byte{0xa0}), ctap2.ErrMissingParameter},
		{"truncated map", cmd(ctap2.CmdMakeCredential, mc[:len(mc)-1]), ctap2.ErrInvalidCBOR},
		{"truncated head", cmd(ctap2.CmdMakeCredential, []byte{0xa1, 0x01, 0x58}), ctap2.ErrInvalidCBOR},
		{"reserved additional info", cmd(ctap2.CmdMakeCredential, []byte{0xa1, 0x01, 0x1c}), ctap2.ErrInvalidCBOR},
		{"trailing bytes", cmd(ctap2.CmdMakeCredential, append(slices.Clone(mc), 0x00)), ctap2.ErrInvalidCBOR},
		{"two items", cmd(ctap2.CmdGetAssertion, append(mustMarshal(t, rawGA()), mustMarshal(t, rawGA())...)), ctap2.ErrInvalidCBOR},
		{"indefinite-length map", cmd(ctap2.CmdGetAssertion, unhex("bf 01 61 61 02 5820"+strings.Repeat("00", 32)+" ff")), ctap2.ErrInvalidCBOR},
		{"indefinite-length byte string", cmd(ctap2.CmdGetAssertion, unhex("a2 01 61 61 02 5f 5820"+strings.Repeat("00", 32)+" ff")), ctap2.ErrInvalidCBOR},
		{"tagged value", cmd(ctap2.CmdGetAssertion, unhex("a2 01 c0 61 61 02 5820"+strings.Repeat("00", 32))), ctap2.ErrInvalidCBOR},
		{"invalid UTF-8", cmd(ctap2.CmdGetAssertion, unhex("a2 01 62 c328 02 5820"+strings.Repeat("00", 32))), ctap2.ErrInvalidCBOR},
		{"duplicate top-level key", cmd(ctap2.CmdGetAssertion, unhex("a3 01 61 61 02 5820"+strings.Repeat("00", 32)+" 01 61 62")), ctap2.ErrInvalidCBOR},
		{"duplicate nested key", cmd(ctap2.CmdMakeCredential, unhex("a4 0158 20"+strings.Repeat("00", 32)+
			"02 a2 626964 6161 626964 6162"+ // rp {"id": "a", "id": "b"}
			"03 a1 626964 4101 04 81 a2 63616c67 26 6474797065 6a7075626c69632d6b6579")), ctap2.ErrInvalidCBOR},
		{"nesting bomb", cmd(ctap2.CmdGetAssertion, append(unhex("a3 01 61 61 02 5820"+strings.Repeat("00", 32)+" 04"), deep...)), ctap2.ErrInvalidCBOR},
		{"array instead of map", cmd(ctap2.CmdMakeCredential, []byte{0x80}), ctap2.ErrCBORUnexpectedType},
		{"array of params instead of map", cmd(ctap2.CmdGetAssertion, mustMarshal(t, []any{"a.example", hashOf("x")})), ctap2.ErrCBORUnexpectedType},
		{"int instead of map", cmd(ctap2.CmdGetAssertion, []byte{0x01}), ctap2.ErrCBORUnexpectedType},
		{"rp as an int", cmd(ctap2.CmdMakeCredential, mustMarshal(t, with(rawMC(), 2, 42))), ctap2.ErrCBORUnexpectedType},
		{"getInfo ignores parameters", cmd(ctap2.CmdGetInfo, []byte{0xff}), ctap2.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newSoftkey(t, Config{})
			got, _ := callRaw(t, a, tt.msg)
			wantStatus(t, tt.name, got, tt.want)
		})
	}
}

// TestMaxMsgSize: requests up to maxMsgSize (command byte included) are served,
// longer ones refused with REQUEST_TOO_LARGE.
func TestMaxMsgSize(t *testing.T) {
	for _, size := range []int{0, 600} {
		a := newSoftkey(t, Config{MaxMsgSize: size})
		limit := int(info(t, a).MaxMsgSize)
		if want := map[int]int{0: defaultMaxMsgSize, 600: 600}[size]; limit != want {
			t.Fatalf("maxMsgSize %d, want %d", limit, want)
		}
		// Pad the user's display name until the message is exactly the limit.
		req := mcRequest("a.example", []byte("u"))
		var msg []byte
		for n := 0; ; n++ {
			req.User.DisplayName = strings.Repeat("x", n)
			msg = append([]byte{byte(ctap2.CmdMakeCredential)}, mustMarshal(t, req)...)
			if len(msg) >= limit {
				break
			}
		}
		if len(msg) != limit {
			t.Fatalf("could not build a message of exactly %d bytes (%d)", limit, len(msg))
		}
		st, _ := callRaw(t, a, msg)
		wantStatus(t, "request of exactly maxMsgSize", st, ctap2.StatusOK)
		req.User.DisplayName += "x"
		msg = append([]byte{byte(ctap2.CmdMakeCredential)}, mustMarshal(t, req)...)
		st, _ = callRaw(t, a, msg)
		wantStatus(t, "request one byte over maxMsgSize", st, ctap2.ErrRequestTooLarge)
		st, _ = callRaw(t, a, append([]byte{0x55}, make([]byte, limit)...))
		wantStatus(t, "oversized unknown command", st, ctap2.ErrRequestTooLarge)
	}
}

func TestGetInfo(t *testing.T) {
	st := store.NewMemory(store.Meta{})
	a := newSoftkeyOn(t, st, Config{
		Algorithms:             []ctap2.COSEAlgorithm{ctap2.AlgEdDSA, ctap2.AlgES256},
		MaxResidentCredentials: 10,
		Transports:             []string{"usb", "nfc"},
	})
	status, body := call(t, a, ctap2.CmdGetInfo, nil)
	wantStatus(t, "getInfo", status, ctap2.StatusOK)
	if err := ctap2.CheckCanonical(body); err != nil {
		t.Fatal(err)
	}
	var i ctap2.Info
	if err := ctap2.Unmarshal(body, &i); err != nil {
		t.Fatal(err)
	}
	aaguid := st.Meta().AAGUID
	if !bytes.Equal(i.AAGUID, aaguid[:]) {
		t.Errorf("aaguid %x, want the store's %x", i.AAGUID, aaguid)
	}
	if !i.HasVersion("FIDO_2_0") {
		t.Errorf("versions %q lack FIDO_2_0", i.Versions)
	}
	if rk, _ := i.Option("rk"); !rk {
		t.Error("option rk is not true")
	}
	if up, _ := i.Option("up"); !up {
		t.Error("option up is not true")
	}
	for _, o := range []string{"uv", "bioEnroll", "userVerificationMgmtPreview"} {
		if _, present := i.Option(o); present {
			t.Errorf("option %q is listed, but the softkey does not support it", o)
		}
	}
	if ep, present := i.Option("ep"); ep || !present {
		t.Errorf("option ep = %v (present %v), want false: supported, not enabled", ep, present)
	}
	want := []ctap2.CredentialParam{{Type: "public-key", Alg: ctap2.AlgEdDSA}, {Type: "public-key", Alg: ctap2.AlgES256}}
	if !slices.Equal(i.Algorithms, want) {
		t.Errorf("algorithms %v, want %v", i.Algorithms, want)
	}
	if !slices.Equal(i.Transports, []string{"usb", "nfc"}) {
		t.Errorf("transports %q", i.Transports)
	}
	if i.MaxMsgSize != defaultMaxMsgSize || i.MaxCredentialCountInList == 0 || i.MaxCredentialIDLength < 79 {
		t.Errorf("maxMsgSize %d, maxCredentialCountInList %d, maxCredentialIdLength %d", i.MaxMsgSize, i.MaxCredentialCountInList, i.MaxCredentialIDLength)
	}
	if i.RemainingDiscoverableCredentials == nil || *i.RemainingDiscoverableCredentials != 10 {
		t.Errorf("remainingDiscoverableCredentials %v, want 10", i.RemainingDiscoverableCredentials)
	}
	// Every advertised algorithm can be made; each ID fits maxCredentialIdLength.
	for _, p := range i.Algorithms {
		c := makeCredential(t, a, mcRequest("a.example", []byte("u"), p.Alg))
		if len(c.id) > int(i.MaxCredentialIDLength) {
			t.Errorf("%v credential ID of %d bytes exceeds maxCredentialIdLength %d", p.Alg, len(c.id), i.MaxCredentialIDLength)
		}
	}
	// The response does not alias engine state: a caller editing it changes nothing.
	i2, err := a.Info()
	if err != nil {
		t.Fatal(err)
	}
	i2.Options["rk"] = false
	i2.Algorithms[0].Alg = 0
	i2.AAGUID[0] ^= 0xff
	i2.Transports[0] = "ble"
	i3 := info(t, a)
	if !i3.Options["rk"] || i3.Algorithms[0].Alg != ctap2.AlgEdDSA || !bytes.Equal(i3.AAGUID, aaguid[:]) || i3.Transports[0] != "usb" {
		t.Error("editing an Info result changed the softkey's getInfo")
	}
	if c := makeCredential(t, a, mcRequest("a.example", []byte("u"))); c.auth.Attested.AAGUID != aaguid {
		t.Error("editing an Info result changed the attested AAGUID")
	}
}

func TestClosed(t *testing.T) {
	a := newSoftkey(t, Config{})
	c := makeCredential(t, a, mcRequest("a.example", []byte("u")))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, msg := range [][]byte{
		{byte(ctap2.CmdGetInfo)},
		append([]byte{byte(ctap2.CmdMakeCredential)}, mustMarshal(t, mcRequest("a.example", []byte("u")))...),
		append([]byte{byte(ctap2.CmdGetAssertion)}, mustMarshal(t, gaRequest("a.example", c.id))...),
		{byte(ctap2.CmdGetNextAssertion)},
		{byte(ctap2.CmdReset)},
		{byte(ctap2.CmdSelection)},
		{0x55},
		{byte(ctap2.CmdMakeCredential), 0xff},
	} {
		st, _ := callRaw(t, a, msg)
		wantStatus(t, "request after Close", st, ctap2.ErrOther)
	}
	if _, err := a.GetAssertion(t.Context(), gaRequest("a.example", c.id)); err != ctap2.ErrOther {
		t.Errorf("GetAssertion after Close: %v, want %v", err, ctap2.ErrOther)
	}
	if _, err := a.Info(); err != ctap2.ErrOther {
		t.Errorf("Info after Close: %v, want %v", err, ctap2.ErrOther)
	}
}

// TestConcurrent: the softkey serializes concurrent callers (run with -race).
func TestConcurrent(t *testing.T) {
	a := newSoftkey(t, Config{})
	c := makeCredential(t, a, mcRequest("a.example", []byte("u")))
	counts := make(chan uint32, 64)
	errs := make(chan error, 64)
	for range 8 {
		go func() {
			for range 8 {
				resp, err := a.GetAssertion(t.Context(), gaRequest("a.example", c.id))
				if err != nil {
					errs <- err
					continue
				}
				ad, err := resp.ParseAuthData()
				if err != nil {
					errs <- err
					continue
				}
				counts <- ad.SignCount
				errs <- nil
			}
		}()
	}
	seen := map[uint32]bool{}
	for range 64 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(counts)
	for n := range counts {
		if seen[n] {
			t.Errorf("signCount %d handed out twice", n)
		}
		seen[n] = true
	}
}
