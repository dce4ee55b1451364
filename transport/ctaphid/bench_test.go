package ctaphid

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/transport"
)

var (
	benchKeyOnce sync.Once
	benchKey     *ecdsa.PrivateKey
)

// ecdsaBaseline measures one P-256 ECDSA signature of a SHA-256 digest, the work
// an authenticator does for every assertion, so that transport overhead can be
// reported machine-independently as a multiple of it. It is measured right before
// each timed run, so that both see the same machine load.
func ecdsaBaseline(b *testing.B) float64 {
	benchKeyOnce.Do(func() {
		var err error
		if benchKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			b.Fatal(err)
		}
	})
	digest := sha256.Sum256([]byte("ctapkit benchmark baseline"))
	sign := func() {
		if _, _, err := ecdsa.Sign(rand.Reader, benchKey, digest[:]); err != nil {
			b.Fatal(err)
		}
	}
	sign() // warm up
	n, start := 0, time.Now()
	for n < 20 || time.Since(start) < 50*time.Millisecond {
		sign()
		n++
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

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
			baseline := ecdsaBaseline(b)
			got, err := d.Transact(ctx, bc.cmd, bc.data)
			if err != nil || !bytes.Equal(got, bc.data) {
				b.Fatalf("Transact = % x, %v", trunc(got), err)
			}
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := d.Transact(ctx, bc.cmd, bc.data); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			nsPerOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(nsPerOp/baseline, "x-ecdsa")
			b.ReportMetric(baseline, "ecdsa-ns")
		})
	}
}
