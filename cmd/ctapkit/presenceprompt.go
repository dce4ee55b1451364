package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/chzyer/readline"
)

// stdinLines delivers the lines typed on stdin, read by one goroutine for the
// life of the process: a prompt that is cancelled (the host gave up) leaves the
// reader in place for the next one.
var stdinLines = sync.OnceValue(func() <-chan string {
	ch := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	return ch
})

// promptPresence is the softkey's presence policy "prompt"
// (CTAPKIT_SOFTKEY_PRESENCE=prompt): every request for a touch asks "touch?
// [y/N]" on this process's terminal and waits for the answer, or for the host
// to cancel. The softkey answers one request at a time, so prompts never overlap.
func promptPresence(ctx context.Context, rpID string) (bool, error) {
	lines := stdinLines()
	// Lines typed while nobody asked do not answer this question.
	for drained := false; !drained; {
		select {
		case _, ok := <-lines:
			drained = !ok
		default:
			drained = true
		}
	}
	who := "the host"
	if rpID != "" {
		who = rpID
	}
	fmt.Fprintf(os.Stderr, "softkey: %s asks for a touch. touch? [y/N] ", who)
	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "(cancelled by the host)")
		return false, ctx.Err()
	case line, ok := <-lines:
		if !readline.IsTerminal(int(os.Stdin.Fd())) {
			fmt.Fprintln(os.Stderr) // a terminal echoed the Enter; a pipe did not
		}
		if !ok {
			return false, errors.New("stdin closed: nobody can answer the touch prompt")
		}
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return true, nil
		}
		return false, nil
	}
}
