package main

import (
	"io"
	"os"

	"github.com/chzyer/readline"
)

// IOStreams is where a command reads and writes. Tests replace it with buffers; the
// terminal queries decide whether to prompt, colour or show a spinner.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	inTTY, outTTY, errTTY bool
}

func systemStreams() *IOStreams {
	return &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		inTTY:  readline.IsTerminal(int(os.Stdin.Fd())),
		outTTY: readline.IsTerminal(int(os.Stdout.Fd())),
		errTTY: readline.IsTerminal(int(os.Stderr.Fd())),
	}
}

// CanPrompt reports whether the user can answer a question: both ends are a terminal.
func (s *IOStreams) CanPrompt() bool { return s.inTTY && s.errTTY }

// Color reports whether stderr may carry colour (a terminal, and NO_COLOR unset).
func (s *IOStreams) Color() bool { return s.errTTY && os.Getenv("NO_COLOR") == "" }
