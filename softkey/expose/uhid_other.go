//go:build !linux

package expose

import (
	"context"
	"fmt"
	"runtime"

	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// ServeUHID fails: uhid is a Linux interface.
func ServeUHID(ctx context.Context, auth ctaphid.Handler, opts UHIDOptions) error {
	return fmt.Errorf("%w: uhid is Linux-only, this is %s", ErrNoUHID, runtime.GOOS)
}
