package expose

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctapkit/ctapkit/ctap2/ctap1"
	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// The FIDO applet as an ISO 7816-4 card (CTAP 2.1 §11.3, "NFC"). Status words the
// card answers, and why where ISO or CTAP leave a choice:
//
//	9000  success; also every non-final link of a command chain
//	61xx  response chaining: xx more bytes (00: 256 or more) wait for GET RESPONSE
//	9100  NFCCTAP keepalive: the request still runs; one data byte, 01 processing or
//	      02 user presence needed
//	6700  an APDU shorter than 4 bytes, Lc/Le fields that do not match its length,
//	      an NFCCTAP_MSG without data, a chain longer than 64 KiB
//	6A82  SELECT of another AID (the FIDO applet, if selected, stays selected, as
//	      ISO 7816-4 keeps the current selection when a SELECT fails)
//	6A86  wrong P1/P2 for SELECT, GET RESPONSE, NFCCTAP_MSG or NFCCTAP_GETRESPONSE
//	6D00  an unknown instruction, and every command before the applet is selected:
//	      that is what the card manager of a real card answers, and a U2F host
//	      reads 6985 as "touch the key" and would retry forever
//	6E00  a class byte other than 00 and 80 (with or without the chaining bit 10)
//	6884  a chained SELECT ("command chaining not supported"): SELECT always
//	      starts afresh, it can neither start nor end a chain
//	6985  GET RESPONSE with nothing to get; NFCCTAP_GETRESPONSE with no request
//	6F00  the handler's reply is empty or not a response APDU; the context of a
//	      Transmit that waits for the handler ended
//
// A command that is not the next link of a chain (other CLA, INS, P1 or P2) drops the
// chain and is processed on its own, rather than answered 6883 ("last command of the
// chain expected", ISO 7816-4): a host that gave up halfway through a chain must not
// find the card stuck. Likewise any command other than GET RESPONSE drops response
// data not yet fetched, and any command other than NFCCTAP_GETRESPONSE cancels a
// request that runs after a 9100.

// fidoAID is the FIDO applet identifier (CTAP 2.1 §11.3.3).
var fidoAID = []byte{0xA0, 0x00, 0x00, 0x06, 0x47, 0x2F, 0x00, 0x01}

// atr is a PC/SC-part-3 style contactless ATR: 3B 8n 80 01, the historical bytes
// "FIDOvicc", and TCK. TD2 = 01 makes pcscd use T=1.
var atr = []byte{0x3B, 0x88, 0x80, 0x01, 0x46, 0x49, 0x44, 0x4F, 0x76, 0x69, 0x63, 0x63, 0x12}

// ATR returns the answer to reset of the card (a fresh copy).
func ATR() []byte { return bytes.Clone(atr) }

const (
	claISO       = 0x00
	claNFCCTAP   = 0x80
	claChaining  = 0x10
	insSelect    = 0xA4
	insGetResp   = 0xC0
	insCTAPMsg   = 0x10 // NFCCTAP_MSG
	insCTAPPoll  = 0x11 // NFCCTAP_GETRESPONSE
	p1SelectAID  = 0x04
	p1CanPoll    = 0x80 // NFCCTAP_MSG: the host polls with NFCCTAP_GETRESPONSE
	p1PollCancel = 0x11 // NFCCTAP_GETRESPONSE: cancel the request

	swStatusUpdate ctap1.StatusWord = 0x9100
	swMoreData     ctap1.StatusWord = 0x6100
	// swChainingUnsupported answers a chained SELECT (ISO 7816-4 6884).
	swChainingUnsupported ctap1.StatusWord = 0x6884

	maxExtendedNe = 65536
	// maxChainData bounds an assembled command chain, so a chain that never ends
	// cannot grow memory without bound.
	maxChainData = 1 << 16

	defaultMaxShortResponse = 256
	defaultCardKeepalive    = 100 * time.Millisecond
	defaultPollInterval     = 20 * time.Millisecond
)

// CardOptions configures a Card. Zero values select the defaults.
type CardOptions struct {
	// MaxShortResponse is the most response data a short APDU gets before the rest
	// is left for GET RESPONSE (61xx); 1..256, default 256. libfido2 reads at most
	// 256 data bytes per response.
	MaxShortResponse int
	// KeepaliveInterval is how long a CTAP request from a host that polls
	// (NFCCTAP_MSG with P1 = 80) may run before the card answers 9100 and lets it run
	// on; default 100 ms. The card answers 9100 earlier when the handler asks for
	// user presence, so that the host can say "touch your key" at once.
	KeepaliveInterval time.Duration
	// PollInterval is how long an NFCCTAP_GETRESPONSE poll waits for the request
	// before answering 9100 again; default 20 ms. It paces hosts that poll in a busy
	// loop (python-fido2), and bounds how long a host that wants to cancel waits for
	// its poll to return.
	PollInterval time.Duration
	// Log, if set, sees every command APDU ("recv") and response APDU ("send"). It
	// must not keep or modify the slice.
	Log func(dir string, apdu []byte)
}

// Card is the FIDO applet of an NFC security key in front of a ctaphid.Handler (a
// softkey): it answers ISO 7816-4 command APDUs, whatever carries them (vpcd,
// a test). Transmit is meant to be called by one connection at a time; PowerOff may
// be called from any goroutine.
type Card struct {
	h    ctaphid.Handler
	opts CardOptions

	txMu sync.Mutex // serialises Transmit

	mu       sync.Mutex // guards the fields below
	selected bool
	chain    *commandChain
	pending  *pendingResponse
	req      *cardRequest // the request running after a 9100, or not yet fetched
}

// commandChain is a command being assembled from chained APDUs (CLA bit 10).
type commandChain struct {
	cla, ins, p1, p2 byte
	data             []byte
}

// pendingResponse is response data left for GET RESPONSE and the status word that
// ends it.
type pendingResponse struct {
	data []byte
	sw   ctap1.StatusWord
}

// cardRequest is a handler call running in its own goroutine, so that the card can
// answer 9100 and polls while it runs.
type cardRequest struct {
	cancel   context.CancelFunc
	done     chan struct{} // closed once resp is set
	resp     []byte
	status   atomic.Uint32 // last status reported by the handler; 0: none yet
	changed  chan struct{} // signalled when status changes
	reported byte          // status of the last 9100 sent; only Transmit touches it
}

// NewCard returns a card that passes CTAP requests to h.
func NewCard(h ctaphid.Handler, opts CardOptions) *Card {
	if opts.MaxShortResponse <= 0 || opts.MaxShortResponse > defaultMaxShortResponse {
		opts.MaxShortResponse = defaultMaxShortResponse
	}
	if opts.KeepaliveInterval <= 0 {
		opts.KeepaliveInterval = defaultCardKeepalive
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = defaultPollInterval
	}
	return &Card{h: h, opts: opts}
}

// PowerOff is the field going away, or a reset: the applet is deselected, a partial
// command chain and unfetched response data are dropped, and a running request is
// cancelled and its answer discarded.
func (c *Card) PowerOff() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.selected = false
	c.chain, c.pending = nil, nil
	c.dropRequestLocked()
}

func (c *Card) dropRequestLocked() {
	if c.req != nil {
		c.req.cancel()
		c.req = nil
	}
}

// Transmit answers one command APDU with response data || SW1 SW2. It never fails:
// bad input gets a status word and the card stays usable. ctx bounds the wait for a
// host that does not poll; when it ends, the request is cancelled and the answer is
// 6F00.
func (c *Card) Transmit(ctx context.Context, apdu []byte) []byte {
	c.txMu.Lock()
	defer c.txMu.Unlock()
	c.log("recv", apdu)
	resp := c.transmit(ctx, apdu)
	c.log("send", resp)
	return resp
}

func (c *Card) log(dir string, apdu []byte) {
	if c.opts.Log != nil {
		c.opts.Log(dir, apdu)
	}
}

func (c *Card) transmit(ctx context.Context, raw []byte) []byte {
	a, err := ctap1.ParseAPDU(raw)
	if err != nil {
		c.interrupt()
		return ctap1.SWWrongLength.Bytes()
	}
	chained := a.CLA&claChaining != 0
	cla := a.CLA &^ claChaining
	if cla != claISO && cla != claNFCCTAP {
		c.interrupt()
		return ctap1.SWClaNotSupported.Bytes()
	}

	c.mu.Lock()
	if ch := c.chain; ch != nil && ch.cla == cla && ch.ins == a.INS && ch.p1 == a.P1 && ch.p2 == a.P2 {
		if len(ch.data)+len(a.Data) > maxChainData {
			c.chain = nil
			c.mu.Unlock()
			return ctap1.SWWrongLength.Bytes()
		}
		ch.data = append(ch.data, a.Data...)
		if chained {
			c.mu.Unlock()
			return ctap1.SWNoError.Bytes()
		}
		c.chain = nil
		a.Data = ch.data
	} else {
		c.chain = nil
		if chained {
			// The first link: refuse what the whole command would be refused for
			// now, rather than after the host has sent every link. SELECT is never
			// chained, so that a SELECT always starts afresh rather than end a
			// stale chain.
			sw := c.precheckLocked(cla, a.INS)
			if cla == claISO && a.INS == insSelect {
				sw = swChainingUnsupported
			}
			if sw == ctap1.SWNoError {
				c.pending = nil
				c.dropRequestLocked()
				c.chain = &commandChain{cla: cla, ins: a.INS, p1: a.P1, p2: a.P2, data: bytes.Clone(a.Data)}
			}
			c.mu.Unlock()
			return sw.Bytes()
		}
	}
	c.mu.Unlock()
	a.CLA = cla
	return c.dispatch(ctx, a)
}

// interrupt is what any command does to the state of the ones before it, when it is
// not a chain link, GET RESPONSE or NFCCTAP_GETRESPONSE.
func (c *Card) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.chain, c.pending = nil, nil
	c.dropRequestLocked()
}

// precheckLocked is the class, instruction and selection check of a command.
func (c *Card) precheckLocked(cla, ins byte) ctap1.StatusWord {
	if cla == claISO && ins == insSelect {
		return ctap1.SWNoError
	}
	if !c.selected {
		return ctap1.SWInsNotSupported
	}
	if cla == claNFCCTAP && ins != insCTAPMsg && ins != insCTAPPoll {
		return ctap1.SWInsNotSupported
	}
	return ctap1.SWNoError
}

func (c *Card) dispatch(ctx context.Context, a *ctap1.APDU) []byte {
	c.mu.Lock()
	sw := c.precheckLocked(a.CLA, a.INS)
	if sw != ctap1.SWNoError || a.CLA != claISO || a.INS != insGetResp {
		c.pending = nil
	}
	if sw != ctap1.SWNoError || a.INS != insCTAPPoll {
		c.dropRequestLocked()
	}
	c.mu.Unlock()
	if sw != ctap1.SWNoError {
		return sw.Bytes()
	}
	switch {
	case a.CLA == claISO && a.INS == insSelect:
		return c.selectApplet(ctx, a)
	case a.CLA == claISO && a.INS == insGetResp:
		return c.getResponse(a)
	case a.INS == insCTAPMsg: // CLA 80, and 00 as YubiKeys accept
		return c.ctapMsg(ctx, a)
	case a.INS == insCTAPPoll:
		return c.ctapPoll(ctx, a)
	}
	return c.u2f(ctx, a)
}

// selectApplet answers SELECT by AID: U2F_V2 when the handler speaks U2F (CTAP 2.1
// §11.3.3), else FIDO_2_0.
func (c *Card) selectApplet(ctx context.Context, a *ctap1.APDU) []byte {
	if a.P1 != p1SelectAID || a.P2 != 0x00 {
		return ctap1.SWIncorrectP1P2.Bytes()
	}
	if !bytes.Equal(a.Data, fidoAID) {
		return ctap1.SWFileNotFound.Bytes()
	}
	version := "FIDO_2_0"
	if c.servesU2F(ctx) {
		version = ctap1.Version
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.selected = true
	return c.replyLocked([]byte(version), ctap1.SWNoError, c.limit(a))
}

// servesU2F asks the handler for its U2F VERSION. It is asked on every SELECT, since
// a softkey switches U2F off while alwaysUv is on.
func (c *Card) servesU2F(ctx context.Context) bool {
	resp := c.h.HandleMsg(ctx, []byte{claISO, ctap1.InsVersion, 0x00, 0x00}, func(byte) {})
	data, sw, err := ctap1.ParseResponse(resp)
	return err == nil && sw == ctap1.SWNoError && string(data) == ctap1.Version
}

// getResponse serves the next part of a long response (ISO 7816-4 GET RESPONSE).
func (c *Card) getResponse(a *ctap1.APDU) []byte {
	if a.P1 != 0 || a.P2 != 0 {
		return ctap1.SWIncorrectP1P2.Bytes()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending
	if p == nil {
		return ctap1.SWConditionsNotSatisfied.Bytes()
	}
	c.pending = nil
	return c.replyLocked(p.data, p.sw, c.limit(a))
}

// ctapMsg runs NFCCTAP_MSG. A host that sets P1 = 80 gets 9100 when the request
// runs long and polls for the answer; one that does not waits for it.
func (c *Card) ctapMsg(ctx context.Context, a *ctap1.APDU) []byte {
	if (a.P1 != 0x00 && a.P1 != p1CanPoll) || a.P2 != 0x00 {
		return ctap1.SWIncorrectP1P2.Bytes()
	}
	if len(a.Data) == 0 {
		return ctap1.SWWrongLength.Bytes()
	}
	req := bytes.Clone(a.Data) // a.Data may alias the caller's buffer
	r := c.start(ctx, func(ctx context.Context, status func(byte)) []byte {
		return c.h.HandleCBOR(ctx, req, status)
	})
	if a.P1 == p1CanPoll {
		return c.await(ctx, r, c.opts.KeepaliveInterval, a)
	}
	return c.await(ctx, r, -1, a)
}

// ctapPoll runs NFCCTAP_GETRESPONSE: the answer of the running request when it is
// ready, else 9100 again. P1 = 11 cancels the request first; the handler then
// answers CTAP2_ERR_KEEPALIVE_CANCEL.
func (c *Card) ctapPoll(ctx context.Context, a *ctap1.APDU) []byte {
	if (a.P1 != 0x00 && a.P1 != p1PollCancel) || a.P2 != 0x00 {
		return ctap1.SWIncorrectP1P2.Bytes()
	}
	c.mu.Lock()
	r := c.req
	c.mu.Unlock()
	if r == nil {
		return ctap1.SWConditionsNotSatisfied.Bytes()
	}
	if a.P1 == p1PollCancel {
		r.cancel()
	}
	return c.await(ctx, r, c.opts.PollInterval, a)
}

// u2f passes a U2F command (CLA 00, chains assembled) to the handler's HandleMsg.
// U2F requests never wait for the user (a U2F key answers 6985 instead), so the
// card waits for the answer.
func (c *Card) u2f(ctx context.Context, a *ctap1.APDU) []byte {
	msg, err := a.Marshal()
	if err != nil {
		return ctap1.SWWrongLength.Bytes()
	}
	r := c.start(ctx, func(ctx context.Context, status func(byte)) []byte {
		return c.h.HandleMsg(ctx, msg, status)
	})
	return c.await(ctx, r, -1, a)
}

// start runs fn in its own goroutine as the card's current request. Its context is
// not ctx's child: a request answered 9100 outlives the APDU that started it.
func (c *Card) start(ctx context.Context, fn func(context.Context, func(byte)) []byte) *cardRequest {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &cardRequest{cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}, 1)}
	status := func(b byte) {
		if r.status.Swap(uint32(b)) != uint32(b) {
			select {
			case r.changed <- struct{}{}:
			default:
			}
		}
	}
	c.mu.Lock()
	c.dropRequestLocked()
	c.req = r
	c.mu.Unlock()
	go func() {
		defer cancel()
		r.resp = fn(rctx, status)
		close(r.done)
	}()
	return r
}

// await waits up to d (d < 0: without limit) for r's answer and returns it, cut to
// the APDU's Ne; if r runs on, it answers 9100 with r's status. A status that asks
// for the user ends the wait early. When ctx ends first, r is cancelled and dropped.
func (c *Card) await(ctx context.Context, r *cardRequest, d time.Duration, a *ctap1.APDU) []byte {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	var changed <-chan struct{}
	if d >= 0 {
		changed = r.changed
	}
wait:
	for {
		select {
		case <-r.done:
			break wait
		case <-ctx.Done():
			c.mu.Lock()
			if c.req == r {
				c.dropRequestLocked()
			}
			c.mu.Unlock()
			return ctap1.SWUnknown.Bytes()
		case <-timeout:
			return c.keepalive(r)
		case <-changed:
			if s := byte(r.status.Load()); s != transport.StatusProcessing && s != r.reported {
				return c.keepalive(r)
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.req != r {
		return ctap1.SWUnknown.Bytes() // PowerOff came first; the answer has no one to go to
	}
	c.req = nil
	if a.INS == insCTAPMsg || a.INS == insCTAPPoll {
		if len(r.resp) == 0 {
			return ctap1.SWUnknown.Bytes() // not even a CTAP status byte
		}
		return c.replyLocked(r.resp, ctap1.SWNoError, c.limit(a))
	}
	if r.resp == nil {
		return ctap1.SWInsNotSupported.Bytes() // the handler does not speak U2F
	}
	data, sw, err := ctap1.ParseResponse(r.resp)
	if err != nil {
		return ctap1.SWUnknown.Bytes()
	}
	return c.replyLocked(data, sw, c.limit(a))
}

// keepalive is the 9100 answer for a request that runs on.
func (c *Card) keepalive(r *cardRequest) []byte {
	s := byte(r.status.Load())
	if s == 0 {
		s = transport.StatusProcessing
	}
	r.reported = s
	return ctap1.Response([]byte{s}, swStatusUpdate)
}

// limit is how much response data one answer to a may carry: its Ne, at most
// MaxShortResponse for a short APDU; a short APDU without Le still gets up to
// MaxShortResponse (python-fido2 selects without Le and expects the version).
func (c *Card) limit(a *ctap1.APDU) int {
	if a.Extended {
		if a.Ne > 0 {
			return a.Ne
		}
		return maxExtendedNe
	}
	if a.Ne > 0 && a.Ne < c.opts.MaxShortResponse {
		return a.Ne
	}
	return c.opts.MaxShortResponse
}

// replyLocked answers data || sw, keeping what does not fit for GET RESPONSE.
func (c *Card) replyLocked(data []byte, sw ctap1.StatusWord, limit int) []byte {
	if len(data) <= limit {
		return ctap1.Response(data, sw)
	}
	rest := data[limit:]
	c.pending = &pendingResponse{data: rest, sw: sw}
	return ctap1.Response(data[:limit], swMoreData|ctap1.StatusWord(min(len(rest), 256)&0xFF))
}
