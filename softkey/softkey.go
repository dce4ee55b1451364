// Package softkey is a software FIDO2 authenticator: the CTAP2 engine behind soft:
// devices, the in-process simulator of every host-side test, and (through
// softkey/expose) a device that other programs can use.
//
// An Authenticator answers CTAP2 requests exactly as a security key would: it decodes
// the request strictly, applies the spec's checks in the spec's order, asks its
// presence policy for a "touch", signs with its own keys and persists resident
// credentials and its signature counter through a store.Store. It never imports a
// transport; ctaphid.Server (or a test) hands it whole messages.
package softkey

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// PresencePolicy decides how the softkey answers a request for user presence.
type PresencePolicy string

const (
	// PresenceAuto: every touch request is granted at once (CI).
	PresenceAuto PresencePolicy = "auto"
	// PresenceDeny: every touch request is declined (CTAP2_ERR_OPERATION_DENIED).
	PresenceDeny PresencePolicy = "deny"
)

// AttestationMode is the attestation a softkey returns from makeCredential.
type AttestationMode string

const (
	// AttestationSelf: packed self attestation, signed by the new credential's key.
	AttestationSelf AttestationMode = "self"
	// AttestationNone: the "none" format, no statement at all.
	AttestationNone AttestationMode = "none"
	// AttestationBatch: packed basic attestation by Config.BatchKey with
	// Config.BatchCerts as x5c.
	AttestationBatch AttestationMode = "batch"
)

// Config tunes an Authenticator. The zero value is a CI softkey: presence granted
// automatically, self attestation, real randomness and the system clock.
type Config struct {
	// Presence is the touch policy; empty means PresenceAuto. PresenceFunc, when set,
	// overrides it.
	Presence PresencePolicy
	// PresenceFunc asks for a touch (a terminal prompt, a test hook). It returns
	// whether the user consented; an error from ctx means the host cancelled.
	PresenceFunc func(ctx context.Context, rpID string) (bool, error)
	// PresenceTimeout bounds a PresenceFunc wait (CTAP2_ERR_USER_ACTION_TIMEOUT);
	// default 30 s.
	PresenceTimeout time.Duration

	// Seed, when set, makes the softkey deterministic for golden tests: every key,
	// credential ID nonce and signature is derived from it (ECDSA per RFC 6979).
	// Never use a seed for a key that protects anything.
	Seed []byte
	// Now is the clock (reset window, getNextAssertion timer, creation times);
	// default time.Now.
	Now func() time.Time

	// Attestation defaults to the mode recorded in the store, else AttestationSelf.
	Attestation AttestationMode
	// BatchKey and BatchCerts (DER, leaf first) sign AttestationBatch statements.
	BatchKey   crypto.Signer
	BatchCerts [][]byte

	// Algorithms the softkey generates, in its own preference order for getInfo;
	// default ES256, EdDSA, ES384.
	Algorithms []ctap2.COSEAlgorithm
	// MaxMsgSize is the getInfo maxMsgSize, enforced on requests; default 2048.
	MaxMsgSize int
	// MaxResidentCredentials bounds discoverable credentials (KEY_STORE_FULL);
	// default 100000.
	MaxResidentCredentials int
	// ResetWindow is how long after power-up (New) authenticatorReset is accepted;
	// default 10 s, as on USB keys.
	ResetWindow time.Duration
	// Transports listed in getInfo; default ["usb"].
	Transports []string
	// WinkFunc is called for CTAPHID_WINK, if set.
	WinkFunc func()

	// UV simulates built-in user verification; empty means UVNone (PIN only).
	UV UVMode

	// Faults, when set, breaks the softkey on purpose for host tests (faults.go).
	Faults *Faults
}

const (
	defaultMaxMsgSize      = 2048
	defaultMaxResident     = 100000
	defaultResetWindow     = 10 * time.Second
	defaultPresenceTimeout = 30 * time.Second
	// nextAssertionWindow is how long getNextAssertion state lives (CTAP 2.1 §6.3).
	nextAssertionWindow = 30 * time.Second
	// maxCredentialCountInList is advertised in getInfo. Longer lists are still
	// served (hosts that ignore the limit keep working); maxMsgSize bounds them.
	maxCredentialCountInList = 16
)

var defaultAlgorithms = []ctap2.COSEAlgorithm{ctap2.AlgES256, ctap2.AlgEdDSA, ctap2.AlgES384}

// Authenticator is one softkey. Like a real key it processes one command at a
// time; its methods are safe for concurrent use and serialize.
type Authenticator struct {
	cfg  Config
	st   store.Store
	meta store.Meta
	rnd  io.Reader // key and nonce source: crypto/rand, or the seed's stream
	// signRand is passed to signatures: nil (RFC 6979) in seed mode.
	signRand io.Reader

	mu       sync.Mutex
	closed   bool
	sealer   *credentialSealer
	signers  signerCache
	u2fState u2fState
	counter  *signCounter
	powerUp  time.Time
	next     *assertionQueue // getNextAssertion state, nil when none
	info     ctap2.Info
	pin      pinState          // clientPIN state kept in memory (clientpin.go)
	cm       *credMgmtSequence // credentialManagement enumeration state, nil when none
	blob     largeBlobWrite    // large-blob array being written (largeblobs.go)
}

// New starts an authenticator on st, which it owns from now on: Close closes it.
func New(st store.Store, cfg Config) (*Authenticator, error) {
	if cfg.Presence == "" {
		cfg.Presence = PresenceAuto
	}
	if cfg.Presence != PresenceAuto && cfg.Presence != PresenceDeny && cfg.PresenceFunc == nil {
		return nil, fmt.Errorf("unknown presence policy %q", cfg.Presence)
	}
	if cfg.PresenceTimeout <= 0 {
		cfg.PresenceTimeout = defaultPresenceTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	meta := st.Meta()
	if cfg.Attestation == "" {
		cfg.Attestation = AttestationMode(meta.Attestation)
	}
	switch cfg.Attestation {
	case "":
		cfg.Attestation = AttestationSelf
	case AttestationSelf, AttestationNone:
	case AttestationBatch:
		if cfg.BatchKey == nil || len(cfg.BatchCerts) == 0 {
			return nil, errors.New("batch attestation needs a batch key and certificate")
		}
		if _, ok := algorithmOf(cfg.BatchKey); !ok {
			return nil, errors.New("batch attestation key must be P-256, P-384 or Ed25519")
		}
	default:
		return nil, fmt.Errorf("unknown attestation mode %q", cfg.Attestation)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = defaultAlgorithms
	}
	for _, alg := range cfg.Algorithms {
		if !canGenerate(alg) {
			return nil, fmt.Errorf("softkey cannot generate %v keys", alg)
		}
	}
	if cfg.MaxMsgSize <= 0 {
		cfg.MaxMsgSize = defaultMaxMsgSize
	}
	if cfg.MaxResidentCredentials <= 0 {
		cfg.MaxResidentCredentials = defaultMaxResident
	}
	if cfg.ResetWindow <= 0 {
		cfg.ResetWindow = defaultResetWindow
	}
	if len(cfg.Transports) == 0 {
		cfg.Transports = []string{"usb"}
	}

	a := &Authenticator{cfg: cfg, st: st, meta: meta, rnd: rand.Reader, signRand: rand.Reader}
	if cfg.Seed != nil {
		seed := sha256.Sum256(cfg.Seed)
		a.rnd = mrand.NewChaCha8(seed)
		a.signRand = nil
	}
	if err := a.initPIN(); err != nil {
		return nil, err
	}
	var err error
	if a.sealer, err = newCredentialSealer(meta.MasterSecret, a.rnd); err != nil {
		return nil, err
	}
	if a.counter, err = newSignCounter(st); err != nil {
		return nil, err
	}
	a.counter.frozen = cfg.Faults.frozenCounter()
	a.powerUp = cfg.Now()
	a.u2fState.window = u2fTouchWindow
	a.info = a.buildInfo()
	return a, nil
}

// Close writes back the signature counter and closes the store. Requests after
// Close fail with CTAP1_ERR_OTHER.
func (a *Authenticator) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.next = nil
	return errors.Join(a.counter.close(), a.st.Close())
}

// AAGUID is the authenticator's model identifier, as in getInfo and attested data.
func (a *Authenticator) AAGUID() [16]byte { return a.meta.AAGUID }

// Wink answers CTAPHID_WINK.
func (a *Authenticator) Wink() {
	if a.cfg.WinkFunc != nil {
		a.cfg.WinkFunc()
	}
}

// HandleMsg answers CTAPHID_MSG (and raw U2F APDUs over NFC) with response data ||
// SW1 SW2 (u2f.go).
func (a *Authenticator) HandleMsg(_ context.Context, apdu []byte, _ func(byte)) []byte {
	return a.handleMsg(apdu)
}

// begin takes the command lock, refusing work after Close.
func (a *Authenticator) begin() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ctap2.ErrOther
	}
	return nil
}
