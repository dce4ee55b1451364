//go:build !nopcsc && (cgo || windows)

package pcsc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ebfe/scard"

	"github.com/ctapkit/ctapkit/transport"
)

// scardConn is a cardConn over PC/SC. It releases its scard context on Close when
// it owns it.
type scardConn struct {
	sc     *scard.Context
	owned  bool
	card   *scard.Card
	reader string
}

// removalWait bounds how long a failed APDU waits for pcscd to say whether the card
// left: a card that goes away mid-APDU first fails it with "Transaction failed",
// and pcscd reports it removed about 0.1 s later (measured with vpcd). A card
// that stays costs an error this much later; errors are rare.
const removalWait = time.Second

func (c *scardConn) Transmit(apdu []byte) ([]byte, error) {
	resp, err := c.card.Transmit(apdu)
	if err == nil && len(resp) < 2 {
		// vpcd answers an empty response when the card's connection drops mid-APDU.
		if gone := c.whyGone(); gone != nil {
			return nil, fmt.Errorf("%w: empty response", gone)
		}
	}
	if err == nil {
		return resp, nil
	}
	if cerr := classify(err); cerr != err {
		return nil, cerr
	}
	// Other failures ("Transaction failed" when the card leaves mid-APDU, "Access
	// denied" when pcscd dies) only mean something went wrong: ask pcscd what.
	if gone := c.whyGone(); gone != nil {
		return nil, fmt.Errorf("%w: %w", gone, err)
	}
	return nil, err
}

// whyGone waits up to removalWait for pcscd to report the card, reader or pcscd
// itself gone, and returns an error wrapping errCardRemoved, errReaderGone or
// errServiceGone, or nil if the card stays.
func (c *scardConn) whyGone() error {
	rs := []scard.ReaderState{{Reader: c.reader, CurrentState: scard.StateUnaware}}
	deadline := time.Now().Add(removalWait)
	for {
		err := c.sc.GetStatusChange(rs, time.Until(deadline))
		switch {
		case errors.Is(err, scard.ErrTimeout):
			return nil
		case err != nil:
			if gone := classify(err); gone != err {
				return gone
			}
			return nil
		case !present(rs[0].EventState):
			return errCardRemoved
		case time.Now().After(deadline):
			return nil
		}
		rs[0].CurrentState = rs[0].EventState &^ scard.StateChanged
	}
}

// Lock begins a PC/SC transaction: other programs' APDUs wait until Unlock.
func (c *scardConn) Lock() error { return c.card.BeginTransaction() }

// Unlock ends the transaction, leaving the card as it is.
func (c *scardConn) Unlock() error { return c.card.EndTransaction(scard.LeaveCard) }

func (c *scardConn) Close() error {
	err := c.card.Disconnect(scard.LeaveCard)
	if c.owned {
		if rerr := c.sc.Release(); err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("pcsc: disconnecting: %w", err)
	}
	return nil
}

// classify marks the scard errors that mean the card, the reader or pcscd is gone.
func classify(err error) error {
	var e scard.Error
	if !errors.As(err, &e) {
		return err
	}
	switch e {
	case scard.ErrRemovedCard, scard.ErrNoSmartcard, scard.ErrUnpoweredCard, scard.ErrUnresponsiveCard:
		return fmt.Errorf("%w: %w", errCardRemoved, err)
	case scard.ErrReaderUnavailable, scard.ErrUnknownReader:
		return fmt.Errorf("%w: %w", errReaderGone, err)
	case scard.ErrNoService, scard.ErrServiceStopped:
		return fmt.Errorf("%w: %w", errServiceGone, err)
	}
	return err
}

// establish connects to pcscd; not running is ErrNoDevice with the fix.
func establish() (*scard.Context, error) {
	sc, err := scard.EstablishContext()
	switch {
	case errors.Is(err, scard.ErrNoService), errors.Is(err, scard.ErrServiceStopped):
		return nil, fmt.Errorf("pcsc: pcscd is not running (%v); start it with 'systemctl start pcscd' or '/usr/sbin/pcscd --foreground &': %w", err, transport.ErrNoDevice)
	case err != nil:
		return nil, fmt.Errorf("pcsc: connecting to pcscd: %w", err)
	}
	return sc, nil
}

// listReaders returns the reader names; none is an empty list.
func listReaders(sc *scard.Context) ([]string, error) {
	readers, err := sc.ListReaders()
	if errors.Is(err, scard.ErrNoReadersAvailable) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pcsc: listing readers: %w", err)
	}
	return readers, nil
}

// cardPresent reports, without waiting, which readers hold a responsive card.
func cardPresent(sc *scard.Context, readers []string) ([]bool, error) {
	rs := make([]scard.ReaderState, len(readers))
	for i, r := range readers {
		rs[i] = scard.ReaderState{Reader: r, CurrentState: scard.StateUnaware}
	}
	if len(rs) == 0 {
		return nil, nil
	}
	if err := sc.GetStatusChange(rs, 0); err != nil && !errors.Is(err, scard.ErrTimeout) {
		return nil, fmt.Errorf("pcsc: reader status: %w", err)
	}
	out := make([]bool, len(rs))
	for i, s := range rs {
		out[i] = present(s.EventState)
	}
	return out, nil
}

func present(s scard.StateFlag) bool {
	return s&scard.StatePresent != 0 && s&scard.StateMute == 0
}

// Open connects to the FIDO applet on the card in a reader. reader is, in this
// order of preference: a reader's exact PC/SC name ("Virtual PCD 00 00"); a
// decimal index N into pcscd's reader list, like libfido2's pcsc://slotN; a
// case-insensitive substring of exactly one reader's name, or of several of which
// exactly one holds a card. Open waits up to opts.CardWait (and ctx) for a card.
// A missing pcscd, reader, card or FIDO applet gives an error wrapping
// transport.ErrNoDevice; several matching readers one wrapping
// transport.ErrAmbiguous.
func Open(ctx context.Context, reader string, opts Options) (*Device, error) {
	sc, err := establish()
	if err != nil {
		return nil, err
	}
	d, err := open(ctx, sc, reader, opts)
	if err != nil {
		sc.Release()
		return nil, err
	}
	return d, nil
}

func open(ctx context.Context, sc *scard.Context, reader string, opts Options) (*Device, error) {
	name, err := resolveReader(sc, reader)
	if err != nil {
		return nil, err
	}
	if err := waitForCard(ctx, sc, name, opts.CardWait); err != nil {
		return nil, err
	}
	card, err := sc.Connect(name, scard.ShareShared, scard.ProtocolAny)
	if err != nil {
		if err := classify(err); errors.Is(err, errCardRemoved) {
			return nil, fmt.Errorf("pcsc: no card on %s (%v): %w", name, err, transport.ErrNoDevice)
		}
		return nil, fmt.Errorf("pcsc: connecting to the card on %s: %w", name, err)
	}
	conn := &scardConn{sc: sc, owned: true, card: card, reader: name}
	d, err := newDevice(ctx, conn, name, opts)
	if err != nil {
		card.Disconnect(scard.LeaveCard)
		return nil, err
	}
	return d, nil
}

// resolveReader finds the reader that path names (see Open).
func resolveReader(sc *scard.Context, path string) (string, error) {
	readers, err := listReaders(sc)
	if err != nil {
		return "", err
	}
	for _, r := range readers {
		if r == path {
			return r, nil
		}
	}
	if n, err := strconv.Atoi(path); err == nil && n >= 0 && strconv.Itoa(n) == path {
		if n < len(readers) {
			return readers[n], nil
		}
		return "", fmt.Errorf("pcsc: no reader number %d (%s): %w", n, readerList(readers), transport.ErrNoDevice)
	}
	var matches []string
	for _, r := range readers {
		if strings.Contains(strings.ToLower(r), strings.ToLower(path)) {
			matches = append(matches, r)
		}
	}
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("pcsc: no reader matches %q (%s): %w", path, readerList(readers), transport.ErrNoDevice)
	case 1:
		return matches[0], nil
	}
	// Several: the one with a card is meant (vpcd has two slots, one empty).
	withCard, err := cardPresent(sc, matches)
	if err != nil {
		return "", err
	}
	var chosen []string
	for i, ok := range withCard {
		if ok {
			chosen = append(chosen, matches[i])
		}
	}
	if len(chosen) == 1 {
		return chosen[0], nil
	}
	return "", fmt.Errorf("pcsc: %q matches several readers (%s); name one exactly: %w", path, strings.Join(matches, ", "), transport.ErrAmbiguous)
}

func readerList(readers []string) string {
	if len(readers) == 0 {
		return "pcscd has no readers"
	}
	return "readers: " + strings.Join(readers, ", ")
}

// waitForCard waits for a card on reader, up to wait (0 = the default) and ctx.
func waitForCard(ctx context.Context, sc *scard.Context, reader string, wait time.Duration) error {
	if wait == 0 {
		wait = defaultCardWait
	}
	rs := []scard.ReaderState{{Reader: reader, CurrentState: scard.StateUnaware}}
	if err := sc.GetStatusChange(rs, 0); err != nil && !errors.Is(err, scard.ErrTimeout) {
		return fmt.Errorf("pcsc: status of %s: %w", reader, err)
	}
	if present(rs[0].EventState) {
		return nil
	}
	noCard := fmt.Errorf("pcsc: no card on %s: %w", reader, transport.ErrNoDevice)
	if wait < 0 {
		return noCard
	}
	start := time.Now()
	deadline := start.Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	// Running out of time while no card comes is "no device here", whichever
	// limit ran out; only a cancel (Ctrl-C) is reported as such.
	gone := func() error {
		return fmt.Errorf("pcsc: no card on %s after %v: %w", reader, time.Since(start).Round(100*time.Millisecond), transport.ErrNoDevice)
	}
	// SCardCancel is the only way to interrupt a blocking GetStatusChange.
	stop := context.AfterFunc(ctx, func() { sc.Cancel() })
	defer stop()
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return gone()
		}
		rs[0].CurrentState = rs[0].EventState &^ scard.StateChanged
		err := sc.GetStatusChange(rs, left)
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return gone()
		case ctx.Err() != nil:
			return fmt.Errorf("pcsc: waiting for a card on %s: %w", reader, ctx.Err())
		case errors.Is(err, scard.ErrTimeout):
			continue
		case err != nil:
			return fmt.Errorf("pcsc: waiting for a card on %s: %w", reader, classify(err))
		case present(rs[0].EventState):
			return nil
		}
	}
}

// Enumerate lists the readers whose card answers the FIDO SELECT, in pcscd's
// reader order. Empty readers and other cards are skipped silently; no pcscd is an
// error wrapping transport.ErrNoDevice ("nothing here"). A card that another
// program's Device holds while it waits for a touch is probed once that ends.
func Enumerate(ctx context.Context) ([]transport.DeviceInfo, error) {
	sc, err := establish()
	if err != nil {
		return nil, err
	}
	defer sc.Release()
	readers, err := listReaders(sc)
	if err != nil {
		return nil, err
	}
	withCard, err := cardPresent(sc, readers)
	if err != nil {
		return nil, err
	}
	var infos []transport.DeviceInfo
	for i, r := range readers {
		if !withCard[i] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return infos, fmt.Errorf("pcsc: listing readers: %w", err)
		}
		if probe(ctx, sc, r) {
			infos = append(infos, readerInfo(r))
		}
	}
	return infos, nil
}

// probe reports whether the card in reader selects the FIDO applet.
func probe(ctx context.Context, sc *scard.Context, reader string) bool {
	card, err := sc.Connect(reader, scard.ShareShared, scard.ProtocolAny)
	if err != nil {
		return false
	}
	defer card.Disconnect(scard.LeaveCard)
	_, err = newDevice(ctx, &scardConn{sc: sc, card: card, reader: reader}, reader, Options{})
	return err == nil
}
