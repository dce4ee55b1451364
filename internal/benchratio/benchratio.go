// Package benchratio reports benchmark results as ratios to a baseline measured
// in the same process: one P-256 ECDSA signature (Run), or another operation
// timed alternately with the one measured (Compare, Times). These machines are
// shared and noisy: absolute times swing several-fold between runs, a ratio to
// work done under the same load does not.
package benchratio

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"slices"
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

// Pair holds the per-call times of an operation and of the baseline it is
// compared with, measured alternately by Compare.
type Pair struct{ Op, Base []time.Duration }

// Times calls ops in turn, once each per benchmark iteration, and times every
// call. The order rotates each iteration so that no op always runs right after
// the same other one (warm caches, a GC just finished); load changes during the
// run hit all alike. Warm the ops up before calling it.
func Times(b *testing.B, ops ...func()) [][]time.Duration {
	b.Helper()
	times := make([][]time.Duration, len(ops))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range ops {
			k := (i + j) % len(ops)
			start := time.Now()
			ops[k]()
			times[k] = append(times[k], time.Since(start))
		}
	}
	b.StopTimer()
	return times
}

// Compare times op and base alternately (Times) for Report.
func Compare(b *testing.B, op, base func()) Pair {
	b.Helper()
	t := Times(b, op, base)
	return Pair{Op: t[0], Base: t[1]}
}

// Report reports the ratio of the medians as unit (outliers from a noisy
// machine barely move it), the ratio of the means as unit+"-mean" (which
// counts rare slow calls, such as a periodic fsync), and both medians as
// opName+"-ns" and baseName+"-ns".
func (p Pair) Report(b *testing.B, unit, opName, baseName string) {
	b.Helper()
	if len(p.Op) == 0 || len(p.Base) == 0 {
		return
	}
	opMed, baseMed := Median(p.Op), Median(p.Base)
	b.ReportMetric(float64(opMed)/float64(baseMed), unit)
	b.ReportMetric(float64(sum(p.Op))/float64(sum(p.Base)), unit+"-mean")
	b.ReportMetric(float64(opMed.Nanoseconds()), opName+"-ns")
	b.ReportMetric(float64(baseMed.Nanoseconds()), baseName+"-ns")
}

// Median is the middle of d (the upper one of an even count).
func Median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func sum(d []time.Duration) time.Duration {
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t
}
