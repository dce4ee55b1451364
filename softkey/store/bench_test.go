package store

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkPutCredential is one durable (fsynced) resident-credential write.
func BenchmarkPutCredential(b *testing.B) {
	d := createDB(b, filepath.Join(b.TempDir(), "softkey.db"))
	i := 0
	for b.Loop() {
		id := fmt.Sprint("cred-", i)
		mustPut(b, d, testCred(fmt.Sprintf("rp%d.example", i%100), id, id))
		i++
	}
}

// BenchmarkCredentialsByRP lists an RP's 5 credentials with 0 and with 10,000
// credentials of other RPs stored: the two should cost about the same.
func BenchmarkCredentialsByRP(b *testing.B) {
	for _, others := range []int{0, 10_000} {
		b.Run(fmt.Sprint("others=", others), func(b *testing.B) {
			d := createDB(b, filepath.Join(b.TempDir(), "softkey.db"))
			var cs []*Credential
			for i := range others {
				id := fmt.Sprint("other-", i)
				cs = append(cs, testCred(fmt.Sprintf("rp%d.example", i%997), id, id))
			}
			for i := range 5 {
				cs = append(cs, testCred("target.example", fmt.Sprint("u", i), fmt.Sprint("t", i)))
			}
			putMany(b, d, cs)
			h := rpHash("target.example")
			for b.Loop() {
				got, err := d.CredentialsByRP(h)
				if err != nil || len(got) != 5 {
					b.Fatalf("CredentialsByRP = %d, %v", len(got), err)
				}
			}
		})
	}
}

// BenchmarkRelyingParties lists 1,000 RPs holding 10,000 credentials: one cursor walk,
// each record decoded only for the RP's ID, name, time and sequence.
func BenchmarkRelyingParties(b *testing.B) {
	d := createDB(b, filepath.Join(b.TempDir(), "softkey.db"))
	var cs []*Credential
	for i := range 10_000 {
		id := fmt.Sprint("cred-", i)
		cs = append(cs, testCred(fmt.Sprintf("rp%d.example", i%1000), id, id))
	}
	putMany(b, d, cs)
	for b.Loop() {
		rps, err := d.RelyingParties()
		if err != nil || len(rps) != 1000 {
			b.Fatalf("RelyingParties = %d, %v", len(rps), err)
		}
	}
}
