package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey/store"
	"github.com/ctapkit/ctapkit/transport"
)

// Exit codes of the CLI contract (design.md).
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitNoDevice  = 3
	exitCTAP      = 4
	exitCancelled = 5
)

// errCancelled: the user gave up at a prompt (Ctrl-C, Ctrl-D); exit code 5.
var errCancelled = errors.New("cancelled")

// usageError marks bad command-line input: a flag value that does not parse, a
// missing argument. It maps to exit code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// hintError adds a line telling the user how to fix the problem.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hintError{err: err, hint: hint} }

// exitCode is the one place that maps an error to the contract's exit codes.
func exitCode(err error) int {
	var ue *usageError
	var st ctap2.StatusError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, transport.ErrBadURI), errors.Is(err, transport.ErrUnknownScheme):
		return exitUsage
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, errCancelled),
		errors.Is(err, ctap2.ErrKeepaliveCancel), errors.Is(err, ctap2.ErrUserActionTimeout),
		errors.Is(err, transport.ErrTimeout):
		return exitCancelled
	case errors.As(err, &st):
		return exitCTAP
	case errors.Is(err, transport.ErrNoDevice), errors.Is(err, transport.ErrAmbiguous), errors.Is(err, store.ErrNotExist):
		return exitNoDevice
	}
	return exitError
}

// errorMessage renders err as the one line printed on stderr (plus an optional hint
// line). CTAP status errors carry their spec name, e.g. CTAP2_ERR_NO_CREDENTIALS.
func errorMessage(err error) (line, hint string) {
	line = err.Error()
	var pinErr *ctap2.PINError
	if st, ok := ctap2.StatusOf(err); ok && !errors.As(err, &pinErr) && !strings.Contains(line, st.Description()) {
		line += " (" + st.Description() + ")"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		line = "timed out waiting for the security key (see --timeout)"
	}
	if errors.Is(err, context.Canceled) {
		line = "cancelled"
	}
	var he *hintError
	if errors.As(err, &he) {
		hint = he.hint
	}
	// One line, always: device replies and file names must not break the contract.
	line = strings.ReplaceAll(line, "\n", " ")
	return line, hint
}

// quietError carries a sentinel for exitCode without adding its text to the
// message, where it would only repeat what msg says.
type quietError struct {
	msg string
	err error
}

func (e *quietError) Error() string { return e.msg }
func (e *quietError) Unwrap() error { return e.err }
