// Package benchratio reports benchmark results as multiples of one P-256 ECDSA
// signature measured in the same process. These machines are shared and noisy:
// absolute times swing several-fold between runs, a ratio to work done under the
// same load does not.
package benchratio

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"
)

// Unit is the metric name of the ratio.
const Unit = "x-ecdsa"

// ECDSASign returns the mean time of one P-256 ecdsa.Sign of a SHA-256 digest, the
// work an authenticator does for every assertion. It is a timed loop rather than
// testing.Benchmark, which cannot run inside a running benchmark.
func ECDSASign(tb testing.TB) time.Duration {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	digest := sha256.Sum256([]byte("ctapkit benchmark baseline"))
	sign := func() {
		if _, err := ecdsa.SignASN1(rand.Reader, key, digest[:]); err != nil {
			tb.Fatal(err)
		}
	}
	sign() // warm up
	n, start := 0, time.Now()
	for n < 20 || time.Since(start) < 50*time.Millisecond {
		sign()
		n++
	}
	return time.Since(start) / time.Duration(n)
}

// Run times op b.N times between two baseline measurements and reports the ratio
// of op's mean time to the mean of the two baselines, so that load changes during
// the run affect both sides alike.
func Run(b *testing.B, op func()) {
	b.Helper()
	before := ECDSASign(b)
	b.ResetTimer()
	for b.Loop() {
		op()
	}
	b.StopTimer()
	after := ECDSASign(b)
	perOp := float64(b.Elapsed()) / float64(b.N)
	base := float64(before+after) / 2
	b.ReportMetric(perOp/base, Unit)
	b.ReportMetric(base, "ecdsa-ns")
}
