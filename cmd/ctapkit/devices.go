package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/transport"
)

// deviceJSON is one entry of `devices --json`: where the key is, and what it
// says it is (getInfo), or why it could not be asked.
type deviceJSON struct {
	transport.DeviceInfo
	AAGUID   string   `json:"aaguid,omitempty"`
	Versions []string `json:"versions,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// devicesProbeTimeout bounds the getInfo of each listed device: a key that does not
// answer must not hold up the listing.
const devicesProbeTimeout = 3 * time.Second

func (a *app) devicesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "devices",
		Short: "List attached security keys",
		Long: `List the FIDO security keys this build can find: USB HID keys, keys on PC/SC
(NFC or contact) readers, and the softkey state file at the default path. Each is asked
for getInfo, to show its AAGUID and CTAP versions. Other softkeys are named with
-d soft:PATH or -d soft:mem.`,
		Example: "  ctapkit devices\n  ctapkit devices --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			infos, err := a.registry.Enumerate(ctx)
			if p := defaultStatePath(); fileExists(p) {
				infos = append(infos, softDeviceInfo(p))
			}
			devs := make([]deviceJSON, 0, len(infos))
			for _, info := range infos {
				devs = append(devs, a.describeDevice(ctx, info))
			}
			if a.json {
				if werr := writeJSON(a.io.Out, devs); werr != nil {
					return werr
				}
			} else if len(devs) == 0 {
				fmt.Fprintln(a.io.ErrOut, "no security keys found")
				fmt.Fprintln(a.io.ErrOut, "hint: 'ctapkit doctor' checks readers, USB permissions and pcscd; for a software key: ctapkit softkey init")
			} else if werr := writeDeviceTable(a.io.Out, devs); werr != nil {
				return werr
			}
			return err
		},
	}
}

// describeDevice opens a listed device and asks for getInfo, within
// devicesProbeTimeout; a failure is reported in the entry, not as an error.
func (a *app) describeDevice(ctx context.Context, info transport.DeviceInfo) deviceJSON {
	d := deviceJSON{DeviceInfo: info}
	ctx, cancel := context.WithTimeout(ctx, devicesProbeTimeout)
	defer cancel()
	dev, err := a.registry.Open(ctx, info.URI)
	if err != nil {
		d.Error = oneLine(err)
		return d
	}
	defer closeWithin(dev.Close, closeGrace)
	gi, err := newClient(guardedDevice{dev}, nil).Info(ctx)
	if err != nil {
		d.Error = oneLine(err)
		return d
	}
	d.AAGUID = uuid(gi.AAGUID)
	d.Versions = gi.Versions
	return d
}

func writeDeviceTable(w io.Writer, devs []deviceJSON) error {
	rows := make([][]string, 0, len(devs))
	for _, d := range devs {
		about := strings.Join(d.Versions, " ")
		if d.Error != "" {
			about = "(" + d.Error + ")"
		}
		rows = append(rows, []string{d.URI, d.Transport, orDash(d.Product), orDash(d.AAGUID), about})
	}
	return writeColumns(w, []string{"DEVICE", "TRANSPORT", "PRODUCT", "AAGUID", "VERSIONS"}, rows)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
