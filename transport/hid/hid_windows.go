//go:build windows && cgo

package hid

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// reportPrefix: karalabe/hid prepends the report ID byte itself on Windows.
const reportPrefix = 0

// openError: Windows 10 1903 and later give FIDO keys to their WebAuthn service
// and let only elevated processes open them directly.
func openError(path string, err error) error {
	if !windows.GetCurrentProcessToken().IsElevated() {
		return fmt.Errorf("hid: opening %s: Windows lets only elevated programs talk to FIDO keys directly "+
			"(others go through Windows Hello): run ctapkit from a terminal started with \"Run as administrator\" (%w)", path, err)
	}
	return fmt.Errorf("hid: opening %s: %w", path, err)
}
