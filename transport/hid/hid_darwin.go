//go:build darwin && cgo

package hid

import "fmt"

// reportPrefix: hidapi on macOS takes the report ID (0) as the first byte.
const reportPrefix = 1

func openError(path string, err error) error {
	return fmt.Errorf("hid: opening %s (is another program holding it exclusively?): %w", path, err)
}
