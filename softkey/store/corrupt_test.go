package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenBitFlipped damages the data pages of a state file at random: Open and
// every read must return (an error is fine), never crash the process.
func TestOpenBitFlipped(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "good.db")
	d := createDB(t, src)
	var cs []*Credential
	for i := range 200 {
		cs = append(cs, testCred(fmt.Sprintf("rp%d.example", i%7), fmt.Sprint("u", i), fmt.Sprint("c", i)))
	}
	putMany(t, d, cs)
	d.Close()
	good, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	page := os.Getpagesize()
	m0, _ := parseBoltMeta(good)
	m1, _ := parseBoltMeta(good[page:])
	used := int(max(m0.pgid, m1.pgid)) * page
	r := rand.New(rand.NewPCG(9, 10))
	opened, failed, damaged := 0, 0, 0
	for i := range 100 {
		b := append([]byte(nil), good...)
		for range 1 + r.IntN(8) {
			off := 2*page + r.IntN(used-2*page)
			b[off] ^= byte(1 + r.IntN(255))
		}
		path := filepath.Join(dir, fmt.Sprint("bad", i))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		d, err := Open(path)
		if err != nil {
			failed++
			continue
		}
		opened++
		for rp := range 7 {
			if _, err := d.CredentialsByRP(rpHash(fmt.Sprintf("rp%d.example", rp))); errors.Is(err, errDamaged) {
				damaged++
			}
		}
		for _, c := range cs[:20] {
			if _, err := d.Credential(c.ID); errors.Is(err, errDamaged) {
				damaged++
			}
		}
		d.CountCredentials()
		d.Close()
		os.Remove(path)
	}
	t.Logf("%d opened, %d refused; %d reads reported damage", opened, failed, damaged)
}
