//go:build linux || (cgo && (darwin || windows))

package hid

import (
	"context"
	"errors"
	"fmt"

	"github.com/ctapkit/ctapkit/transport"
	"github.com/ctapkit/ctapkit/transport/ctaphid"
)

// newDevice allocates a CTAPHID channel on conn. conn is closed if that fails.
func newDevice(ctx context.Context, conn ctaphid.PacketConn, info transport.DeviceInfo, opts Options) (*Device, error) {
	d, err := ctaphid.Open(ctx, conn, ctaphid.Options{Info: info, Timeout: opts.Timeout, Log: opts.Log})
	if err != nil {
		conn.Close()
		if g, ok := errors.AsType[*goneError](err); ok {
			return nil, g
		}
		return nil, fmt.Errorf("hid: connecting to %s: %w", info.Path, err)
	}
	return &Device{hid: d, info: info}, nil
}

// deviceInfo is the part of a DeviceInfo that the path alone gives.
func deviceInfo(path string) transport.DeviceInfo {
	return transport.DeviceInfo{URI: SchemeName + ":" + path, Transport: SchemeName, Path: path}
}
