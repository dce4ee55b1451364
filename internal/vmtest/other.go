//go:build !linux

package vmtest

import (
	"context"
	"fmt"
	"runtime"
)

// Prepare fails: the kit is built with Debian's tools and boots on Linux hosts.
func Prepare(context.Context) (*Kit, error) {
	return nil, fmt.Errorf("%w: the VM kit needs a Linux host, this is %s", ErrUnavailable, runtime.GOOS)
}

// Run fails; there is no kit outside Linux.
func (k *Kit) Run(context.Context, RunOptions) ([]byte, []byte, int, error) {
	return nil, nil, -1, ErrUnavailable
}
