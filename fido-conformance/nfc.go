package conformance

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
)

// APDUTransmitter is an optional capability of a Target.Device that reaches the
// authenticator through ISO 7816-4 APDUs: an NFC or contact reader (PC/SC). The
// NFC cases (CTAP 2.1 §11.3) need it; on any other device they are skipped.
type APDUTransmitter interface {
	// TransmitAPDU sends one command APDU exactly as given and returns the
	// card's answer as it came: response data || SW1 SW2. It does no command
	// chaining, no GET RESPONSE after 61xx and no 0x9100 polling: the cases
	// check that the card does those right.
	TransmitAPDU(ctx context.Context, apdu []byte) ([]byte, error)
}

// The FIDO applet (CTAP 2.1 §11.3.3) and an AID no card should have (a
// proprietary RID "F0" followed by "ctapkit").
var (
	nfcFIDOAID    = []byte{0xA0, 0x00, 0x00, 0x06, 0x47, 0x2F, 0x00, 0x01}
	nfcUnknownAID = []byte{0xF0, 0x63, 0x74, 0x61, 0x70, 0x6B, 0x69, 0x74}
)

const (
	nfcSWOK       = 0x9000
	nfcSWNotFound = 0x6A82
	// nfcChunk is the data size of chained short APDUs (libfido2 uses 240).
	nfcChunk = 240
	// nfcMaxGetResponse bounds the GET RESPONSE rounds of one answer: 7609 bytes
	// in chunks of at least 32.
	nfcMaxGetResponse = 240
)

// nfcOpen skips the case unless the device takes raw APDUs.
func nfcOpen(t *T) APDUTransmitter {
	tx, ok := t.Target().Device.(APDUTransmitter)
	if !ok {
		t.Skipf("not an NFC device (the transport offers no raw APDU access)")
	}
	return tx
}

// nfcSend transmits one APDU and splits the answer.
func nfcSend(t *T, tx APDUTransmitter, apdu []byte) ([]byte, uint16) {
	resp, err := tx.TransmitAPDU(t.Context(), apdu)
	t.Must(fmt.Sprintf("transmitting APDU % X", apdu[:min(len(apdu), 4)]), err)
	if len(resp) < 2 {
		t.Fatalf("APDU % X: observed a %d-byte answer, expected at least SW1 SW2", apdu[:min(len(apdu), 4)], len(resp))
	}
	n := len(resp) - 2
	return resp[:n], uint16(resp[n])<<8 | uint16(resp[n+1])
}

// nfcTransmit transmits one APDU and collects the whole answer: while the card
// says 61xx, ISO GET RESPONSE with Le = xx. It returns the data, the final status
// word and how many GET RESPONSEs were needed.
func nfcTransmit(t *T, tx APDUTransmitter, apdu []byte) ([]byte, uint16, int) {
	data, sw := nfcSend(t, tx, apdu)
	out := append([]byte(nil), data...)
	rounds := 0
	for sw>>8 == 0x61 {
		if rounds++; rounds > nfcMaxGetResponse {
			t.Fatalf("the card kept answering 61xx after %d GET RESPONSEs", nfcMaxGetResponse)
		}
		data, sw = nfcSend(t, tx, []byte{0x00, 0xC0, 0x00, 0x00, byte(sw)})
		out = append(out, data...)
	}
	return out, sw, rounds
}

// nfcSelect selects an applet (case 4, Le 00).
func nfcSelect(t *T, tx APDUTransmitter, aid []byte) ([]byte, uint16) {
	apdu := append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(aid))}, aid...)
	data, sw, _ := nfcTransmit(t, tx, append(apdu, 0x00))
	return data, sw
}

// nfcSelectFIDO selects the FIDO applet; a failure ends the case.
func nfcSelectFIDO(t *T, tx APDUTransmitter) []byte {
	data, sw := nfcSelect(t, tx, nfcFIDOAID)
	if sw != nfcSWOK {
		t.Fatalf("SELECT of the FIDO applet: observed SW %04X, expected 9000", sw)
	}
	return data
}

// nfcCTAP sends a CTAP2 message as NFCCTAP_MSG (CLA 80, INS 10, P1 00: no
// NFCCTAP_GETRESPONSE) in short APDUs, chained (CLA bit 0x10) when it does not fit
// one, and returns the complete CTAP2 reply.
func nfcCTAP(t *T, tx APDUTransmitter, msg []byte) (reply []byte, getResponses int) {
	for len(msg) > nfcChunk {
		apdu := append([]byte{0x90, 0x10, 0x00, 0x00, nfcChunk}, msg[:nfcChunk]...)
		data, sw := nfcSend(t, tx, apdu)
		if sw != nfcSWOK || len(data) != 0 {
			t.Fatalf("chained NFCCTAP_MSG fragment: observed SW %04X with %d data bytes, expected 9000 and no data", sw, len(data))
		}
		msg = msg[nfcChunk:]
	}
	apdu := append([]byte{0x80, 0x10, 0x00, 0x00, byte(len(msg))}, msg...)
	data, sw, rounds := nfcTransmit(t, tx, append(apdu, 0x00))
	if sw != nfcSWOK {
		t.Fatalf("NFCCTAP_MSG: observed SW %04X, expected 9000", sw)
	}
	if len(data) == 0 {
		t.Fatalf("NFCCTAP_MSG: observed an empty answer, expected a CTAP2 status byte")
	}
	return data, rounds
}

func init() {
	register(
		Case{ID: "NFC-1", Area: AreaNFC, Requirement: "CTAP 2.1 §11.3.3",
			Description: "SELECT of the FIDO applet answers U2F_V2 or FIDO_2_0 with 9000",
			Run: func(t *T) {
				tx := nfcOpen(t)
				data, sw := nfcSelect(t, tx, nfcFIDOAID)
				if sw != nfcSWOK {
					t.Fatalf("SELECT: observed SW %04X, expected 9000", sw)
				}
				if v := string(data); v != "U2F_V2" && v != "FIDO_2_0" {
					t.Errorf("SELECT answer: observed %q, expected \"U2F_V2\" or \"FIDO_2_0\"", v)
				}
			}},
		Case{ID: "NFC-2", Area: AreaNFC, Requirement: "ISO 7816-4 SELECT; CTAP 2.1 §11.3.3",
			Description: "SELECT of an application the card does not have answers 6A82, and the FIDO applet can be selected again",
			Run: func(t *T) {
				tx := nfcOpen(t)
				if _, sw := nfcSelect(t, tx, nfcUnknownAID); sw != nfcSWNotFound {
					t.Errorf("SELECT of AID % X: observed SW %04X, expected 6A82", nfcUnknownAID, sw)
				}
				nfcSelectFIDO(t, tx)
			}},
		Case{ID: "NFC-3", Area: AreaNFC, Requirement: "CTAP 2.1 §11.3.4 (response chaining, GET RESPONSE)",
			Description: "getInfo over NFCCTAP_MSG answers in full through GET RESPONSE, the same as over the suite's transport",
			Run: func(t *T) {
				tx := nfcOpen(t)
				u2fRequireCTAP2(t)
				nfcSelectFIDO(t, tx)
				reply, rounds := nfcCTAP(t, tx, []byte{byte(ctap2.CmdGetInfo)})
				t.Logf("%d-byte getInfo in %d GET RESPONSE rounds", len(reply), rounds)
				if reply[0] != byte(ctap2.StatusOK) {
					t.Fatalf("getInfo over NFC: observed %s, expected CTAP2_OK", ctap2.StatusError(reply[0]).Name())
				}
				var info ctap2.Info
				if err := ctap2.Unmarshal(reply[1:], &info); err != nil {
					t.Fatalf("getInfo over NFC: %v", err)
				}
				if want := t.Info(); !slices.Equal(info.Versions, want.Versions) || !bytes.Equal(info.AAGUID, want.AAGUID) {
					t.Errorf("getInfo over NFC: observed versions %v, aaguid %x, expected %v, %x", info.Versions, info.AAGUID, want.Versions, want.AAGUID)
				}
				if len(reply) > 256 && rounds == 0 {
					t.Errorf("a %d-byte answer to a short APDU: observed no 61xx, expected GET RESPONSE chaining", len(reply))
				}
			}},
		Case{ID: "NFC-4", Area: AreaNFC, Requirement: "CTAP 2.1 §11.3.4 (command chaining)",
			Description: "a CTAP2 request longer than one short APDU arrives whole through command chaining",
			Run: func(t *T) {
				tx := nfcOpen(t)
				u2fRequireCTAP2(t)
				nfcSelectFIDO(t, tx)
				// getAssertion for a credential the key cannot have, with up=false so
				// no touch is asked; an unknown extension (which keys ignore) makes it
				// span three APDUs. Only a whole request reaches NO_CREDENTIALS.
				body, err := ctap2.Marshal(&ctap2.GetAssertionRequest{
					RPID: "nfc.conformance.invalid", ClientDataHash: hidRandom(32),
					AllowList:  []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: hidRandom(64)}},
					Extensions: map[string]ctap2.RawMessage{"x-ctapkit-padding": nfcCBOR(t, hidRandom(400))},
					Options:    &ctap2.Options{UP: ctap2.Bool(false)},
				})
				t.Must("encoding getAssertion", err)
				msg := append([]byte{byte(ctap2.CmdGetAssertion)}, body...)
				reply, _ := nfcCTAP(t, tx, msg)
				t.Logf("%d-byte request in %d APDUs", len(msg), (len(msg)+nfcChunk-1)/nfcChunk)
				if got := ctap2.StatusError(reply[0]); got != ctap2.ErrNoCredentials {
					t.Errorf("chained getAssertion: observed %s, expected %s", got.Name(), ctap2.ErrNoCredentials.Name())
				}
			}},
	)
}

// nfcCBOR encodes v; a failure ends the case.
func nfcCBOR(t *T, v any) ctap2.RawMessage {
	b, err := ctap2.Marshal(v)
	t.Must("encoding CBOR", err)
	return b
}
