package webauthn

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ctapkit/ctapkit/ctap2"
)

// Client extensions and their CTAP counterparts (WebAuthn L3 §10, CTAP 2.1 §12):
//
//	credProps                        client only: was the credential made discoverable
//	credentialProtectionPolicy       credProtect 1..3 (enforce: refuse keys without it)
//	prf                              hmac-secret, salts SHA-256("WebAuthn PRF" 0x00 input);
//	                                 evaluated at create() through hmac-secret-mc
//	largeBlob                        largeBlobKey, then authenticatorLargeBlobs
//	minPinLength                     minPinLength
//	credBlob / getCredBlob           credBlob
//	hmacCreateSecret / hmacGetSecret hmac-secret, raw salts

var credProtectLevels = map[string]uint{
	"userVerificationOptional":                     ctap2.CredProtectUVOptional,
	"userVerificationOptionalWithCredentialIDList": ctap2.CredProtectUVOptionalWithCredList,
	"userVerificationRequired":                     ctap2.CredProtectUVRequired,
}

func (s *session) supports(ext string) bool { return slices.Contains(s.info.Extensions, ext) }

// creationExtensionState is what create() asked of the key, to read its answer.
type creationExtensionState struct {
	ctap      ctap2.MakeCredentialExtensions
	prfHMAC   *ctap2.HMACSecret // set when prf.eval went out through hmac-secret-mc
	prfSecond bool
}

func (s *session) creationExtensions(ctx context.Context, o *CreationOptions, rk bool) (*creationExtensionState, error) {
	in := o.Extensions
	st := &creationExtensionState{}
	if p := in.CredentialProtectionPolicy; p != "" {
		level, ok := credProtectLevels[p]
		if !ok {
			return nil, fmt.Errorf("%w: extensions.credentialProtectionPolicy: %q is not a policy", ErrOptions, p)
		}
		switch {
		case s.supports(ctap2.ExtCredProtect):
			st.ctap.CredProtect = level
		case in.EnforceCredentialProtectionPolicy && level > ctap2.CredProtectUVOptional:
			return nil, fmt.Errorf("%w: credentialProtectionPolicy %s is enforced, and the key does not support credProtect", ErrNotSupported, p)
		}
	}
	if (in.PRF != nil || in.HMACCreateSecret) && s.supports(ctap2.ExtHMACSecret) {
		st.ctap.HMACSecret = true
	}
	if in.PRF != nil && in.PRF.Eval != nil && s.supports(ctap2.ExtHMACSecretMC) {
		h, err := s.c.CTAP.NewHMACSecret(ctx)
		if err != nil {
			return nil, err
		}
		var salt2 []byte
		if in.PRF.Eval.Second != nil {
			salt2 = ctap2.PRFSalt(in.PRF.Eval.Second)
			st.prfSecond = true
		}
		if st.ctap.HMACSecretMC, err = h.Input(ctap2.PRFSalt(in.PRF.Eval.First), salt2); err != nil {
			return nil, err
		}
		st.prfHMAC = h
	}
	if lb := in.LargeBlob; lb != nil {
		supported := s.option("largeBlobs") && s.supports(ctap2.ExtLargeBlobKey) && rk
		if !supported && lb.Support == "required" {
			return nil, fmt.Errorf("%w: largeBlob support is required, and the key has no large blob storage for discoverable credentials", ErrNotSupported)
		}
		st.ctap.LargeBlobKey = supported
	}
	if in.MinPinLength && s.supports(ctap2.ExtMinPINLength) {
		st.ctap.MinPINLength = true
	}
	if len(in.CredBlob) > 0 && s.supports(ctap2.ExtCredBlob) {
		st.ctap.CredBlob = in.CredBlob
	}
	return st, nil
}

// creationResults are create()'s clientExtensionResults.
func (s *session) creationResults(o *CreationOptions, ad *ctap2.AuthData, resp *ctap2.MakeCredentialResponse,
	st *creationExtensionState, rk bool) (ExtensionResults, error) {
	in := o.Extensions
	var r ExtensionResults
	out, err := ctap2.ParseExtensionOutputs(ad.Extensions)
	if err != nil {
		return r, fmt.Errorf("makeCredential response: %w", err)
	}
	if in.CredProps {
		r.CredProps = &CredPropsOutput{RK: rk}
	}
	hmacEnabled := out.HMACSecret != nil && *out.HMACSecret
	if in.PRF != nil {
		r.PRF = &PRFOutput{Enabled: ctap2.Bool(hmacEnabled)}
		if st.prfHMAC != nil && len(out.HMACSecretMC) > 0 {
			first, second, err := st.prfHMAC.Outputs(out.HMACSecretMC)
			if err != nil {
				return r, err
			}
			r.PRF.Results = prfResults(first, second)
		}
	}
	if in.HMACCreateSecret {
		r.HMACCreateSecret = ctap2.Bool(hmacEnabled)
	}
	if in.LargeBlob != nil {
		r.LargeBlob = &LargeBlobOutput{Supported: ctap2.Bool(len(resp.LargeBlobKey) > 0)}
	}
	if len(in.CredBlob) > 0 {
		r.CredBlob = ctap2.Bool(out.CredBlobStored != nil && *out.CredBlobStored)
	}
	return r, nil
}

func prfResults(first, second []byte) *PRFResults {
	r := &PRFResults{First: b64(first)}
	if second != nil {
		r.Second = b64(second)
	}
	return r
}

// requestExtensionState is what get() asked of the key.
type requestExtensionState struct {
	ctap      ctap2.GetAssertionExtensions
	hmac      *ctap2.HMACSecret
	prf       bool // hmac is for prf (else for hmacGetSecret)
	largeBlob bool
}

// requestExtensions maps get()'s inputs; allow is the allowList after any
// narrowing, and prfValues the PRF inputs chosen for it.
func (s *session) requestExtensions(ctx context.Context, o *RequestOptions, prf *PRFValues) (*requestExtensionState, error) {
	in := o.Extensions
	st := &requestExtensionState{}
	var salt1, salt2 []byte
	switch {
	case prf != nil:
		salt1 = ctap2.PRFSalt(prf.First)
		if prf.Second != nil {
			salt2 = ctap2.PRFSalt(prf.Second)
		}
		st.prf = true
	case in.HMACGetSecret != nil:
		salt1, salt2 = in.HMACGetSecret.Salt1, in.HMACGetSecret.Salt2
		if len(salt1) != 32 || (salt2 != nil && len(salt2) != 32) {
			return nil, fmt.Errorf("%w: extensions.hmacGetSecret: salts must be 32 bytes", ErrOptions)
		}
	}
	if salt1 != nil && s.supports(ctap2.ExtHMACSecret) {
		h, err := s.c.CTAP.NewHMACSecret(ctx)
		if err != nil {
			return nil, err
		}
		if st.ctap.HMACSecret, err = h.Input(salt1, salt2); err != nil {
			return nil, err
		}
		st.hmac = h
	}
	if lb := in.LargeBlob; lb != nil && (lb.Read || lb.Write != nil) && s.option("largeBlobs") && s.supports(ctap2.ExtLargeBlobKey) {
		st.ctap.LargeBlobKey = true
		st.largeBlob = true
	}
	if in.GetCredBlob && s.supports(ctap2.ExtCredBlob) {
		st.ctap.CredBlob = true
	}
	return st, nil
}

// requestResults are get()'s clientExtensionResults; reading or writing a large
// blob happens here, after the assertion, as in browsers.
func (s *session) requestResults(ctx context.Context, o *RequestOptions, ad *ctap2.AuthData,
	resp *ctap2.GetAssertionResponse, st *requestExtensionState) (ExtensionResults, error) {
	in := o.Extensions
	var r ExtensionResults
	out, err := ctap2.ParseExtensionOutputs(ad.Extensions)
	if err != nil {
		return r, fmt.Errorf("getAssertion response: %w", err)
	}
	if st.hmac != nil && len(out.HMACSecretOutput) > 0 {
		first, second, err := st.hmac.Outputs(out.HMACSecretOutput)
		if err != nil {
			return r, err
		}
		if st.prf {
			r.PRF = &PRFOutput{Results: prfResults(first, second)}
		} else {
			r.HMACGetSecret = &HMACSecretOutput{Output1: b64(first)}
			if second != nil {
				r.HMACGetSecret.Output2 = b64(second)
			}
		}
	} else if in.PRF != nil {
		r.PRF = &PRFOutput{}
	}
	if in.GetCredBlob && st.ctap.CredBlob {
		blob := b64(out.CredBlob)
		r.GetCredBlob = &blob
	}
	if lb := in.LargeBlob; lb != nil {
		r.LargeBlob = &LargeBlobOutput{}
		key := resp.LargeBlobKey
		switch {
		case !st.largeBlob || len(key) == 0:
			if lb.Write != nil {
				r.LargeBlob.Written = ctap2.Bool(false)
			}
		case lb.Read:
			blob, err := s.c.CTAP.GetLargeBlob(ctx, key)
			switch {
			case errors.Is(err, ctap2.ErrLargeBlobNotFound):
				// No blob: the output has no "blob" member.
			case err != nil:
				return r, fmt.Errorf("reading the large blob: %w", err)
			default:
				enc := b64(blob)
				r.LargeBlob.Blob = &enc
			}
		case lb.Write != nil:
			err := s.c.CTAP.PutLargeBlob(ctx, s.token, key, lb.Write)
			var st ctap2.StatusError
			switch {
			case errors.As(err, &st):
				// The key refused (storage full, no permission): WebAuthn
				// reports written: false with the assertion.
				r.LargeBlob.Written = ctap2.Bool(false)
			case err != nil:
				return r, fmt.Errorf("writing the large blob: %w", err)
			default:
				r.LargeBlob.Written = ctap2.Bool(true)
			}
		}
	}
	return r, nil
}
