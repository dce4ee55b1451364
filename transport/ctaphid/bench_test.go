package ctaphid

import (
	"bytes"
	"context"
	"testing"

	"github.com/ctapkit/ctapkit/internal/benchratio"
	"github.com/ctapkit/ctapkit/transport"
)

// BenchmarkTransactPipe measures one host Device transaction through the Server
// over an in-memory Pipe. Besides ns/op it reports x-ecdsa: the cost of a
// transaction in P-256 signatures measured in the same process.
func BenchmarkTransactPipe(b *testing.B) {
	d, _ := openDevice(b, &fakeHandler{}, ServerOptions{}, Options{})
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		cmd  transport.Command
		data []byte
	}{
		{"Ping", transport.CmdPing, nil},
		{"CBOR-200", transport.CmdCBOR, pattern(200)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			got, err := d.Transact(ctx, bc.cmd, bc.data)
			if err != nil || !bytes.Equal(got, bc.data) {
				b.Fatalf("Transact = % x, %v", trunc(got), err)
			}
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			benchratio.Run(b, func() {
				if _, err := d.Transact(ctx, bc.cmd, bc.data); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
