package ctap1

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/ctapkit/ctapkit/ctap2"
)

// RegisterRequest is the data of a REGISTER command: challenge || application.
type RegisterRequest struct {
	Challenge   [ChallengeSize]byte   // SHA-256 of the client data (CTAP2: clientDataHash)
	Application [ApplicationSize]byte // SHA-256 of the AppID (CTAP2: rpIdHash)
}

// Marshal returns the 64 request bytes.
func (r *RegisterRequest) Marshal() []byte {
	out := make([]byte, 0, ChallengeSize+ApplicationSize)
	return append(append(out, r.Challenge[:]...), r.Application[:]...)
}

// ParseRegisterRequest decodes REGISTER data; anything but 64 bytes is 0x6700.
func ParseRegisterRequest(data []byte) (*RegisterRequest, error) {
	if len(data) != ChallengeSize+ApplicationSize {
		return nil, fmt.Errorf("register request of %d bytes, want 64: %w", len(data), SWWrongLength)
	}
	var r RegisterRequest
	copy(r.Challenge[:], data)
	copy(r.Application[:], data[ChallengeSize:])
	return &r, nil
}

// RegisterResponse is the data of a successful REGISTER answer:
// 0x05 || public key (65) || L || key handle (L) || attestation certificate (DER) ||
// signature (DER ECDSA).
type RegisterResponse struct {
	PublicKey   []byte // uncompressed P-256 point, 0x04 || X || Y
	KeyHandle   []byte
	Certificate []byte // DER X.509 attestation certificate
	Signature   []byte // DER ECDSA signature by the certificate's key
}

// ParseRegisterResponse decodes REGISTER response data (without the status word).
// The certificate's end is found from its DER length; the signature must be exactly
// one DER SEQUENCE. The point must be on P-256 and the key handle non-empty.
func ParseRegisterResponse(data []byte) (*RegisterResponse, error) {
	s := cryptobyte.String(data)
	var reserved uint8
	var pub, kh []byte
	var cert, sig cryptobyte.String
	if !s.ReadUint8(&reserved) || reserved != registerReserved {
		return nil, errors.New("register response: does not start with 0x05")
	}
	if !s.ReadBytes(&pub, PublicKeySize) {
		return nil, errors.New("register response: truncated public key")
	}
	if _, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub); err != nil {
		return nil, fmt.Errorf("register response: public key: %w", err)
	}
	var khLen uint8
	if !s.ReadUint8(&khLen) || khLen == 0 || !s.ReadBytes(&kh, int(khLen)) {
		return nil, errors.New("register response: missing or truncated key handle")
	}
	if !s.ReadASN1Element(&cert, cbasn1.SEQUENCE) {
		return nil, errors.New("register response: attestation certificate is not a DER SEQUENCE")
	}
	if !s.ReadASN1Element(&sig, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, errors.New("register response: signature is not exactly one DER SEQUENCE")
	}
	return &RegisterResponse{
		PublicKey:   append([]byte(nil), pub...),
		KeyHandle:   append([]byte(nil), kh...),
		Certificate: append([]byte(nil), cert...),
		Signature:   append([]byte(nil), sig...),
	}, nil
}

// Marshal encodes the response data (without the status word).
func (r *RegisterResponse) Marshal() ([]byte, error) {
	if len(r.PublicKey) != PublicKeySize || len(r.KeyHandle) == 0 || len(r.KeyHandle) > MaxKeyHandleSize {
		return nil, errors.New("register response: bad public key or key handle length")
	}
	out := make([]byte, 0, 2+PublicKeySize+len(r.KeyHandle)+len(r.Certificate)+len(r.Signature))
	out = append(out, registerReserved)
	out = append(out, r.PublicKey...)
	out = append(out, byte(len(r.KeyHandle)))
	out = append(out, r.KeyHandle...)
	out = append(out, r.Certificate...)
	return append(out, r.Signature...), nil
}

// RegisterSignedData is what a REGISTER signature covers:
// 0x00 || application || challenge || keyHandle || publicKey.
func RegisterSignedData(application [ApplicationSize]byte, challenge [ChallengeSize]byte, keyHandle, publicKey []byte) []byte {
	out := make([]byte, 0, 1+ApplicationSize+ChallengeSize+len(keyHandle)+len(publicKey))
	out = append(out, registerHashID)
	out = append(out, application[:]...)
	out = append(out, challenge[:]...)
	out = append(out, keyHandle...)
	return append(out, publicKey...)
}

// Verify checks the attestation signature with the certificate's P-256 key. It says
// nothing about whether the certificate is trusted.
func (r *RegisterResponse) Verify(req *RegisterRequest) error {
	cert, err := x509.ParseCertificate(r.Certificate)
	if err != nil {
		return fmt.Errorf("register response: attestation certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return errors.New("register response: attestation certificate key is not P-256")
	}
	key := ctap2.COSEKey{Alg: ctap2.AlgES256, Public: pub}
	if err := key.Verify(RegisterSignedData(req.Application, req.Challenge, r.KeyHandle, r.PublicKey), r.Signature); err != nil {
		return fmt.Errorf("register response: %w", err)
	}
	return nil
}

// AuthenticateRequest is an AUTHENTICATE command: P1 control byte and the data
// challenge || application || L || keyHandle.
type AuthenticateRequest struct {
	Control     Control
	Challenge   [ChallengeSize]byte
	Application [ApplicationSize]byte
	KeyHandle   []byte
}

// Marshal returns the command data (the control byte travels in P1).
func (r *AuthenticateRequest) Marshal() ([]byte, error) {
	if len(r.KeyHandle) > MaxKeyHandleSize {
		return nil, fmt.Errorf("authenticate: key handle of %d bytes exceeds %d", len(r.KeyHandle), MaxKeyHandleSize)
	}
	out := make([]byte, 0, authenticateFixed+len(r.KeyHandle))
	out = append(out, r.Challenge[:]...)
	out = append(out, r.Application[:]...)
	out = append(out, byte(len(r.KeyHandle)))
	return append(out, r.KeyHandle...), nil
}

// ParseAuthenticateRequest decodes AUTHENTICATE data with its P1. A length byte that
// disagrees with the data is 0x6700; P1 is not checked here.
func ParseAuthenticateRequest(p1 byte, data []byte) (*AuthenticateRequest, error) {
	if len(data) < authenticateFixed || len(data) != authenticateFixed+int(data[authenticateFixed-1]) {
		return nil, fmt.Errorf("authenticate request of %d bytes: %w", len(data), SWWrongLength)
	}
	r := AuthenticateRequest{Control: Control(p1)}
	copy(r.Challenge[:], data)
	copy(r.Application[:], data[ChallengeSize:])
	r.KeyHandle = data[authenticateFixed:]
	return &r, nil
}

// AuthenticateResponse is the data of a successful AUTHENTICATE answer:
// UP byte || counter (4, big-endian) || signature (DER ECDSA).
type AuthenticateResponse struct {
	UserPresence byte // 0x01 when the user was present, 0x00 for DontEnforcePresence
	Counter      uint32
	Signature    []byte
}

// ParseAuthenticateResponse decodes AUTHENTICATE response data (without the status
// word). The UP byte's reserved bits must be zero and the signature must be exactly
// one DER SEQUENCE.
func ParseAuthenticateResponse(data []byte) (*AuthenticateResponse, error) {
	s := cryptobyte.String(data)
	var r AuthenticateResponse
	var sig cryptobyte.String
	if !s.ReadUint8(&r.UserPresence) || !s.ReadUint32(&r.Counter) {
		return nil, errors.New("authenticate response: truncated")
	}
	if r.UserPresence&^userPresenceFlag != 0 {
		return nil, fmt.Errorf("authenticate response: reserved bits set in user presence byte 0x%02x", r.UserPresence)
	}
	if !s.ReadASN1Element(&sig, cbasn1.SEQUENCE) || !s.Empty() {
		return nil, errors.New("authenticate response: signature is not exactly one DER SEQUENCE")
	}
	r.Signature = append([]byte(nil), sig...)
	return &r, nil
}

// Marshal encodes the response data (without the status word).
func (r *AuthenticateResponse) Marshal() []byte {
	out := make([]byte, 0, 5+len(r.Signature))
	out = append(out, r.UserPresence)
	out = binary.BigEndian.AppendUint32(out, r.Counter)
	return append(out, r.Signature...)
}

// AuthenticateSignedData is what an AUTHENTICATE signature covers:
// application || UP byte || counter || challenge. It equals CTAP2's
// authenticatorData || clientDataHash for authenticator data without attested
// credential data or extensions.
func AuthenticateSignedData(application [ApplicationSize]byte, userPresence byte, counter uint32, challenge [ChallengeSize]byte) []byte {
	out := make([]byte, 0, ApplicationSize+5+ChallengeSize)
	out = append(out, application[:]...)
	out = append(out, userPresence)
	out = binary.BigEndian.AppendUint32(out, counter)
	return append(out, challenge[:]...)
}
