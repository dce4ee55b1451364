package conformance

import (
	"bytes"
	"crypto/x509"
	"errors"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
)

// mgFormats are the attestation statement formats of the WebAuthn registry
// (WebAuthn §8, IANA "WebAuthn Attestation Statement Format Identifiers").
var mgFormats = []string{"packed", "tpm", "android-key", "android-safetynet", "fido-u2f", "apple", "none", "compound"}

// mgAttested makes an ES256 credential for a fresh RP and returns the request and
// the response, both of which must succeed.
func mgAttested(t *T, tag string) (*ctap2.MakeCredentialRequest, *ctap2.MakeCredentialResponse) {
	mgCTAP2(t)
	req := mgMCRequest(mgRPID(tag), ctap2.AlgES256)
	mgProtectMC(t, req)
	resp, err := t.Client().MakeCredential(t.Context(), req)
	t.Must("makeCredential", err)
	return req, resp
}

// mgRawMC sends a valid ES256 makeCredential below the client and returns the raw
// response body, the client data hash it signed and the RP ID. It asks nothing
// else first (not even getInfo), so that a key whose every answer is non-canonical
// still reaches the case's canonical check; only when the key wants user
// verification (PUAT_REQUIRED or OPERATION_DENIED) does it retry with what
// mgVerification gives, which reads getInfo and may get a PIN token.
func mgRawMC(t *T, tag string) (body, cdh []byte, rpID string) {
	rpID = mgRPID(tag)
	m := mgMCMap(rpID)
	body, err := mgRaw(t, mgMessage(t, ctap2.CmdMakeCredential, m))
	if mgNeedsUV(t, err) {
		m = mgMCMap(rpID)
		mgProtectMap(t, ctap2.CmdMakeCredential, m, rpID, false)
		body, err = mgRaw(t, mgMessage(t, ctap2.CmdMakeCredential, m))
	}
	t.Must("makeCredential", err)
	return body, m[1].([]byte), rpID
}

// mgNeedsUV reports whether a raw request's error asks for user verification; it
// skips the case when the key does not speak CTAP2 at all.
func mgNeedsUV(t *T, err error) bool {
	switch {
	case errors.Is(err, ctap2.ErrInvalidCommand):
		t.Skipf("the key does not speak CTAP2 (CBOR command refused)")
	case errors.Is(err, ctap2.ErrPUATRequired), errors.Is(err, ctap2.ErrOperationDenied):
		return true
	}
	return false
}

// mgAttStmtKeys are the attStmt keys each format may carry (WebAuthn §8.2, §8.6, §8.7).
var mgAttStmtKeys = map[string][]string{
	ctap2.FormatPacked:  {"alg", "sig", "x5c"},
	ctap2.FormatFIDOU2F: {"sig", "x5c"},
	ctap2.FormatNone:    {},
}

func init() {
	register(
		Case{ID: "AT-1", Area: AreaAttestation, Presence: true,
			Requirement: "WebAuthn §8 (registered formats); CTAP 2.2 §6.4 (0x16 attestationFormats)",
			Description: "makeCredential's fmt is a registered attestation format, and one getInfo's attestationFormats lists when it has the field",
			Run: func(t *T) {
				_, resp := mgAttested(t, "at1")
				if !slices.Contains(mgFormats, resp.Fmt) {
					t.Errorf("fmt: observed %q, expected one of %v", resp.Fmt, mgFormats)
				}
				if fs := t.Info().AttestationFormats; len(fs) > 0 && !slices.Contains(fs, resp.Fmt) && resp.Fmt != ctap2.FormatNone {
					t.Errorf("fmt: observed %q, expected one of getInfo attestationFormats %v", resp.Fmt, fs)
				}
				t.Logf("fmt %s", resp.Fmt)
			}},
		Case{ID: "AT-2", Area: AreaAttestation, Presence: true,
			Requirement: "WebAuthn §8.2 (packed self attestation: alg equals the credential's, signature by the credential key)",
			Description: "packed self attestation: alg matches the credential's algorithm for every algorithm, and the signature verifies",
			Run: func(t *T) {
				info := mgCTAP2(t)
				checked := 0
				for _, alg := range mgAlgorithms(info) {
					rpID := mgRPID("at2")
					req := mgMCRequest(rpID, alg)
					mgProtectMC(t, req)
					resp, err := t.Client().MakeCredential(t.Context(), req)
					if !t.ExpectStatus("makeCredential with "+alg.String(), err, ctap2.StatusOK) {
						continue
					}
					var st ctap2.AttStmt
					if resp.Fmt != ctap2.FormatPacked || ctap2.Unmarshal(resp.AttStmt, &st) != nil || len(st.X5C) != 0 {
						continue
					}
					checked++
					_, key := mgCheckMC(t, rpID, req.ClientDataHash, resp, alg)
					if key != nil && st.Alg != key.Alg {
						t.Errorf("attStmt alg: observed %v, expected the credential's %v", st.Alg, key.Alg)
					}
				}
				if checked == 0 {
					t.Skipf("the key does not use packed self attestation")
				}
			}},
		Case{ID: "AT-3", Area: AreaAttestation, Presence: true,
			Requirement: "WebAuthn §8.2.1 (packed attestation certificate requirements)",
			Description: "packed attestation with x5c: the leaf signs, and is v3 with C, O, CN, OU \"Authenticator Attestation\", not a CA, and any AAGUID extension equal to authData's",
			Run: func(t *T) {
				req, resp := mgAttested(t, "at3")
				var st ctap2.AttStmt
				if err := ctap2.Unmarshal(resp.AttStmt, &st); err != nil {
					t.Fatalf("attStmt: observed %v, expected a map", err)
				}
				if resp.Fmt != ctap2.FormatPacked || len(st.X5C) == 0 {
					t.Skipf("the key does not use packed attestation with a certificate (fmt %s)", resp.Fmt)
				}
				ad := mgAuthData(t, "makeCredential", resp.AuthData)
				leaf, err := x509.ParseCertificate(st.X5C[0])
				if err != nil {
					t.Fatalf("x5c[0]: observed %v, expected a DER X.509 certificate", err)
				}
				if err := ctap2.CheckPackedCertificate(leaf, ad.Attested.AAGUID); err != nil {
					t.Errorf("attestation certificate: observed %v, expected the packed certificate requirements met", err)
				}
				res, err := resp.VerifyAttestation(req.ClientDataHash)
				if err != nil {
					t.Errorf("packed x5c attestation: observed %v, expected a signature by the certificate's key", err)
					return
				}
				t.Logf("attestation certificate: %s", res.Chain[0].Subject)
			}},
		Case{ID: "AT-4", Area: AreaAttestation, Presence: true,
			Requirement: "WebAuthn §8.2, §8.6 (the signature covers authData || clientDataHash)",
			Description: "the attestation signature covers the clientDataHash: it does not verify against a different hash",
			Run: func(t *T) {
				req, resp := mgAttested(t, "at4")
				if resp.Fmt == ctap2.FormatNone {
					t.Skipf("the key uses attestation format none (no signature)")
				}
				if _, err := resp.VerifyAttestation(req.ClientDataHash); err != nil {
					t.Fatalf("attestation: observed %v, expected a statement that verifies", err)
				}
				other := bytes.Clone(req.ClientDataHash)
				other[0] ^= 0xFF
				if _, err := resp.VerifyAttestation(other); err == nil {
					t.Errorf("attestation with another clientDataHash: observed a valid signature, expected none (the hash is not signed)")
				}
			}},
		Case{ID: "AT-5", Area: AreaAttestation, Presence: true,
			Requirement: "CTAP 2.1 §8 (responses in CTAP2 canonical CBOR), §6.1 (response keys 0x01-0x06)",
			Description: "the makeCredential response, read raw, is CTAP2 canonical CBOR with integer keys fmt(1), authData(2), attStmt(3)",
			Run: func(t *T) {
				body, _, _ := mgRawMC(t, "at5")
				if err := ctap2.CheckCanonical(body); err != nil {
					t.Errorf("makeCredential response: observed %v, expected CTAP2 canonical CBOR", err)
				}
				var m map[int]ctap2.RawMessage
				if err := ctap2.Unmarshal(body, &m); err != nil {
					t.Fatalf("makeCredential response: observed %v, expected a CBOR map with unsigned integer keys", err)
				}
				for _, k := range []int{1, 2, 3} {
					if _, ok := m[k]; !ok {
						t.Errorf("makeCredential response: observed no key %d, expected fmt(1), authData(2), attStmt(3)", k)
					}
				}
				for k := range m {
					if k < 0 {
						t.Errorf("makeCredential response key %d: observed a negative integer, expected unsigned integers", k)
					}
				}
			}},
		Case{ID: "AT-6", Area: AreaAttestation, Presence: true,
			Requirement: "CTAP 2.1 §8 (canonical CBOR); WebAuthn §8.2, §8.6, §8.7 (attStmt syntax)",
			Description: "attStmt is canonical CBOR carrying only its format's keys (packed: alg, sig, x5c; fido-u2f: sig, x5c; none: empty)",
			Run: func(t *T) {
				_, resp := mgAttested(t, "at6")
				if err := ctap2.CheckCanonical(resp.AttStmt); err != nil {
					t.Errorf("attStmt: observed %v, expected CTAP2 canonical CBOR", err)
				}
				allowed, known := mgAttStmtKeys[resp.Fmt]
				if !known {
					t.Skipf("fmt %s: the suite checks the keys of packed, fido-u2f and none only", resp.Fmt)
				}
				var m map[string]ctap2.RawMessage
				if err := ctap2.Unmarshal(resp.AttStmt, &m); err != nil || m == nil {
					t.Fatalf("attStmt: observed %v, expected a map with text keys", err)
				}
				for k := range m {
					if !slices.Contains(allowed, k) {
						t.Errorf("attStmt for %s: observed key %q, expected only %v", resp.Fmt, k, allowed)
					}
				}
				if resp.Fmt == ctap2.FormatPacked {
					for _, k := range []string{"alg", "sig"} {
						if _, ok := m[k]; !ok {
							t.Errorf("packed attStmt: observed no %q, expected alg and sig", k)
						}
					}
				}
			}},
		Case{ID: "AT-7", Area: AreaAttestation, Presence: true,
			Requirement: "CTAP 2.1 §8 (canonical CBOR, COSE key labels in order 1, 3, -1, -2, -3); RFC 9052 §7",
			Description: "the credential public key in authData is a canonical COSE_Key that parses for its algorithm",
			Run: func(t *T) {
				_, resp := mgAttested(t, "at7")
				ad := mgAuthData(t, "makeCredential", resp.AuthData)
				if err := ctap2.CheckCanonical(ad.Attested.PublicKey); err != nil {
					t.Errorf("credential public key: observed %v, expected CTAP2 canonical CBOR", err)
				}
				key, err := ctap2.ParseCOSEKey(ad.Attested.PublicKey)
				if err != nil {
					t.Fatalf("credential public key: observed %v, expected an ES256 COSE_Key", err)
				}
				if key.Alg != ctap2.AlgES256 {
					t.Errorf("credential public key alg: observed %v, expected es256", key.Alg)
				}
			}},
		Case{ID: "AT-8", Area: AreaAttestation, Presence: true,
			Requirement: "CTAP 2.1 §6.1 (0x04 epAtt: only when enterprise attestation was returned)",
			Description: "without an enterpriseAttestation request, epAtt is absent or false",
			Run: func(t *T) {
				body, _, _ := mgRawMC(t, "at8")
				var m map[uint64]ctap2.RawMessage
				if err := ctap2.Unmarshal(body, &m); err != nil {
					t.Fatalf("makeCredential response: observed %v, expected a map with integer keys", err)
				}
				raw, ok := m[4]
				if !ok {
					return
				}
				var ep bool
				if err := ctap2.Unmarshal(raw, &ep); err != nil {
					t.Fatalf("epAtt: observed %x, expected a boolean", []byte(raw))
				}
				if ep {
					t.Errorf("epAtt: observed true, expected absent or false without enterpriseAttestation")
				}
			}},
	)
}
