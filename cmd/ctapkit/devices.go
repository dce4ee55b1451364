package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/transport"
)

func (a *app) devicesCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "devices",
		Short: "List attached security keys",
		Long: `List the FIDO security keys this build can find. Softkeys are not listed: name
them with -d soft:PATH or -d soft:mem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			infos, err := a.registry.Enumerate(cmd.Context())
			if infos == nil {
				infos = []transport.DeviceInfo{}
			}
			if a.json {
				if werr := writeJSON(a.io.Out, infos); werr != nil {
					return werr
				}
			} else if len(infos) == 0 {
				fmt.Fprintln(a.io.ErrOut, "no security keys found")
			} else {
				rows := make([]row, 0, len(infos))
				for _, i := range infos {
					rows = append(rows, row{i.URI, i.Product})
				}
				if werr := writeTable(a.io.Out, rows); werr != nil {
					return werr
				}
			}
			return err
		},
	}
}
