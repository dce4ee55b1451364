package store

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ctapkit/ctapkit/ctap2"
)

// fullSettings sets every field to a value other than its default.
func fullSettings() Settings {
	return Settings{
		PINHash:               bytes.Repeat([]byte{0xab}, PINHashSize),
		PINCodePoints:         6,
		PINRetries:            5,
		UVRetries:             3,
		ForcePINChange:        true,
		MinPINLength:          8,
		MinPINLengthRPIDs:     []string{"example.com", "bänk.example"},
		AlwaysUV:              true,
		EnterpriseAttestation: true,
	}
}

func wantSettings(t *testing.T, s Store, want Settings) {
	t.Helper()
	got, err := s.Settings()
	if err != nil {
		t.Fatalf("Settings: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Settings = %+v\n            want %+v", got, want)
	}
}

func mustSetSettings(t *testing.T, s Store, v Settings) {
	t.Helper()
	if err := s.SetSettings(v); err != nil {
		t.Fatalf("SetSettings(%+v): %v", v, err)
	}
}

// invalidSettings are settings SetSettings must refuse, by what is wrong with them.
func invalidSettings() map[string]Settings {
	with := func(f func(s *Settings)) Settings {
		s := fullSettings()
		f(&s)
		return s
	}
	return map[string]Settings{
		"PIN hash 15 bytes":       with(func(s *Settings) { s.PINHash = make([]byte, 15) }),
		"PIN hash 17 bytes":       with(func(s *Settings) { s.PINHash = make([]byte, 17) }),
		"PIN hash 32 bytes":       with(func(s *Settings) { s.PINHash = make([]byte, 32) }),
		"PIN retries -1":          with(func(s *Settings) { s.PINRetries = -1 }),
		"PIN retries 9":           with(func(s *Settings) { s.PINRetries = DefaultPINRetries + 1 }),
		"UV retries -1":           with(func(s *Settings) { s.UVRetries = -1 }),
		"UV retries 9":            with(func(s *Settings) { s.UVRetries = DefaultUVRetries + 1 }),
		"PIN length -1":           with(func(s *Settings) { s.PINCodePoints = -1 }),
		"PIN length 64":           with(func(s *Settings) { s.PINCodePoints = ctap2.MaxPINLength + 1 }),
		"min PIN length -1":       with(func(s *Settings) { s.MinPINLength = -1 }),
		"min PIN length 64":       with(func(s *Settings) { s.MinPINLength = ctap2.MaxPINLength + 1 }),
		"RP ID not UTF-8":         with(func(s *Settings) { s.MinPINLengthRPIDs = []string{"ok.example", "\xc3\x28"} }),
		"huge retries":            with(func(s *Settings) { s.PINRetries = 1 << 40 }),
		"everything out of range": {PINHash: []byte{1}, PINRetries: -5, UVRetries: 100, MinPINLength: 1000},
	}
}

func testSettings(t *testing.T, open func(t *testing.T) Store) {
	t.Run("SettingsDefault", func(t *testing.T) {
		s := open(t)
		want := DefaultSettings()
		if want.PINHash != nil || want.PINRetries != 8 || want.UVRetries != 8 || want.MinPINLength != 0 {
			t.Fatalf("DefaultSettings = %+v", want)
		}
		wantSettings(t, s, want)
		// Reading the defaults stores nothing, and they are not shared.
		got, _ := s.Settings()
		got.PINRetries = 1
		wantSettings(t, s, want)
		// Credentials do not touch the settings.
		mustPut(t, s, testCred("example.com", "alice", "cred-1"))
		if err := s.DeleteAllCredentials(); err != nil {
			t.Fatal(err)
		}
		wantSettings(t, s, want)
	})

	t.Run("SettingsRoundTrip", func(t *testing.T) {
		s := open(t)
		full := fullSettings()
		boundary := Settings{
			PINHash: make([]byte, PINHashSize), PINCodePoints: ctap2.MaxPINLength,
			PINRetries: DefaultPINRetries, UVRetries: DefaultUVRetries, MinPINLength: ctap2.MaxPINLength,
		}
		for i, v := range []Settings{
			full,
			{PINRetries: 0, UVRetries: 0}, // blocked: the zero value is valid, not "unset"
			{PINHash: full.PINHash, PINCodePoints: 4, PINRetries: 1, UVRetries: 8},
			boundary,
			{MinPINLengthRPIDs: []string{""}, PINRetries: 3},
			DefaultSettings(),
			full,
		} {
			mustSetSettings(t, s, v)
			want := v.clone()
			if !reflect.DeepEqual(v, want) {
				t.Fatalf("case %d: clone changed settings already in normal form", i)
			}
			wantSettings(t, s, want)
		}
		// Empty slices are stored as nil.
		v := fullSettings()
		v.PINHash, v.MinPINLengthRPIDs = []byte{}, []string{}
		mustSetSettings(t, s, v)
		v.PINHash, v.MinPINLengthRPIDs = nil, nil
		wantSettings(t, s, v)
		// Writing settings touches neither credentials nor the counter.
		mustPut(t, s, testCred("example.com", "alice", "cred-1"))
		if err := s.SetCounterCeiling(77); err != nil {
			t.Fatal(err)
		}
		mustSetSettings(t, s, full)
		wantCount(t, s, 1)
		if c, err := s.CounterCeiling(); err != nil || c != 77 {
			t.Errorf("CounterCeiling = %d, %v after SetSettings", c, err)
		}
	})

	t.Run("SettingsIsolation", func(t *testing.T) {
		s := open(t)
		v := fullSettings()
		mustSetSettings(t, s, v)
		v.PINHash[0], v.MinPINLengthRPIDs[0] = 'X', "changed.example"
		wantSettings(t, s, fullSettings())
		got, err := s.Settings()
		if err != nil {
			t.Fatal(err)
		}
		got.PINHash[0], got.MinPINLengthRPIDs[1] = 'Y', "changed.example"
		got.MinPINLengthRPIDs = append(got.MinPINLengthRPIDs[:1], "appended")
		wantSettings(t, s, fullSettings())
	})

	t.Run("SettingsValidate", func(t *testing.T) {
		s := open(t)
		before := fullSettings()
		before.PINRetries = 2
		mustSetSettings(t, s, before)
		for name, v := range invalidSettings() {
			if err := s.SetSettings(v); err == nil {
				t.Errorf("%s: SetSettings succeeded", name)
			} else if !strings.Contains(err.Error(), "settings") {
				t.Errorf("%s: error %q does not say what was refused", name, err)
			}
			wantSettings(t, s, before)
		}
	})
}

func testLargeBlob(t *testing.T, open func(t *testing.T) Store) {
	wantBlob := func(t *testing.T, s Store, want []byte) {
		t.Helper()
		got, err := s.LargeBlobArray()
		if err != nil {
			t.Fatalf("LargeBlobArray: %v", err)
		}
		if (got == nil) != (want == nil) || !bytes.Equal(got, want) {
			t.Fatalf("LargeBlobArray = %x (nil: %v), want %x (nil: %v)", got, got == nil, want, want == nil)
		}
	}
	t.Run("LargeBlob", func(t *testing.T) {
		s := open(t)
		wantBlob(t, s, nil) // never written
		if err := s.SetLargeBlobArray([]byte{}); err != nil {
			t.Fatal(err)
		}
		wantBlob(t, s, []byte{}) // written empty: not nil
		data := []byte{0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d, 0x3c}
		in := bytes.Clone(data)
		if err := s.SetLargeBlobArray(in); err != nil {
			t.Fatal(err)
		}
		in[0] = 'X'
		wantBlob(t, s, data)
		got, _ := s.LargeBlobArray()
		got[0] = 'Y'
		wantBlob(t, s, data)
		// Settings and credentials leave it alone.
		mustSetSettings(t, s, fullSettings())
		mustPut(t, s, testCred("example.com", "alice", "cred-1"))
		if err := s.DeleteAllCredentials(); err != nil {
			t.Fatal(err)
		}
		wantBlob(t, s, data)
		big := bytes.Repeat([]byte("large blob "), 10_000)
		if err := s.SetLargeBlobArray(big); err != nil {
			t.Fatal(err)
		}
		wantBlob(t, s, big)
		if err := s.SetLargeBlobArray(nil); err != nil {
			t.Fatal(err)
		}
		wantBlob(t, s, nil) // nil clears
		if err := s.SetLargeBlobArray(nil); err != nil {
			t.Fatalf("clearing twice: %v", err)
		}
		wantBlob(t, s, nil)
		wantSettings(t, s, fullSettings())
	})
}

func rpInfo(id, name string, n int) RPInfo {
	return RPInfo{ID: id, Name: name, IDHash: rpHash(id), Credentials: n}
}

func wantRPs(t *testing.T, s Store, want ...RPInfo) {
	t.Helper()
	got, err := s.RelyingParties()
	if err != nil {
		t.Fatalf("RelyingParties: %v", err)
	}
	if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
		t.Fatalf("RelyingParties =\n%v\nwant\n%v", got, want)
	}
}

func testRelyingParties(t *testing.T, open func(t *testing.T) Store) {
	t.Run("RelyingParties", func(t *testing.T) {
		s := open(t)
		wantRPs(t, s)
		mustPut(t, s, testCred("b.example", "u1", "b1"))
		mustPut(t, s, testCred("b.example", "u2", "b2"))
		mustPut(t, s, testCred("a.example", "u1", "a1"))
		mustPut(t, s, testCred("c.example", "u1", "c1"))
		mustPut(t, s, testCred("a.example.com", "u1", "ac1"))
		mustPut(t, s, testCred("ab.example", "u1", "ab1"))
		a := func(n int) RPInfo { return rpInfo("a.example", "The a.example", n) }
		b := func(n int) RPInfo { return rpInfo("b.example", "The b.example", n) }
		ac := rpInfo("a.example.com", "The a.example.com", 1)
		ab := rpInfo("ab.example", "The ab.example", 1)
		c := rpInfo("c.example", "The c.example", 1)
		wantRPs(t, s, a(1), ac, ab, b(2), c)
		// Replacing an account's credential keeps the count.
		mustPut(t, s, testCred("b.example", "u1", "b3"))
		wantRPs(t, s, a(1), ac, ab, b(2), c)
		// Replacing by ID moves the credential: c.example has none left.
		mustPut(t, s, testCred("a.example", "u9", "c1"))
		wantRPs(t, s, a(2), ac, ab, b(2))
		if err := s.DeleteCredential([]byte("b2")); err != nil {
			t.Fatal(err)
		}
		wantRPs(t, s, a(2), ac, ab, b(1))
		if err := s.DeleteCredential([]byte("b3")); err != nil {
			t.Fatal(err)
		}
		wantRPs(t, s, a(2), ac, ab)
		got, _ := s.RelyingParties()
		got[0].ID = "changed"
		wantRPs(t, s, a(2), ac, ab)
		if err := s.DeleteAllCredentials(); err != nil {
			t.Fatal(err)
		}
		wantRPs(t, s)
		mustPut(t, s, testCred("b.example", "u1", "b1"))
		wantRPs(t, s, b(1))
	})

	t.Run("RelyingPartiesName", func(t *testing.T) {
		// ID and name come from the newest credential, as ordered by CredentialsByRP.
		s := open(t)
		put := func(id, user, name string, created time.Time) {
			c := testCred("example.com", user, id)
			c.RPName, c.Created = name, created
			mustPut(t, s, c)
		}
		rp := func(name string, n int) RPInfo { return rpInfo("example.com", name, n) }
		put("c-old", "u1", "Old", baseTime)
		wantRPs(t, s, rp("Old", 1))
		put("a-new", "u2", "New", baseTime.Add(time.Hour))
		wantRPs(t, s, rp("New", 2))
		put("b-older", "u3", "Older", baseTime.Add(-time.Hour)) // inserted last, created first
		wantRPs(t, s, rp("New", 3))
		put("0-zero", "u4", "Zero time", time.Time{})
		wantRPs(t, s, rp("New", 4))
		put("d-tie", "u5", "Tie", baseTime.Add(time.Hour)) // same time as a-new, inserted later
		wantRPs(t, s, rp("Tie", 5))
		put("a-tie", "u6", "", baseTime.Add(time.Hour)) // the newest may have no name
		wantRPs(t, s, rp("", 6))
		wantByRP(t, s, "example.com", "a-tie,d-tie,a-new,c-old,b-older,0-zero")
		for _, step := range []struct{ id, name string }{
			{"a-tie", "Tie"}, {"d-tie", "New"}, {"a-new", "Old"}, {"c-old", "Older"}, {"b-older", "Zero time"},
		} {
			if err := s.DeleteCredential([]byte(step.id)); err != nil {
				t.Fatal(err)
			}
			n, _ := s.CountCredentials()
			wantRPs(t, s, rp(step.name, n))
		}
		// A renamed RP: the same account registered again carries the new name.
		put("late", "u4", "Renamed", time.Time{})
		wantRPs(t, s, rp("Renamed", 1))
	})

	t.Run("RelyingPartiesMany", func(t *testing.T) {
		s := open(t)
		r := rand.New(rand.NewPCG(11, 12))
		counts := map[string]int{}
		var cs []*Credential
		for i := range 600 {
			rp := fmt.Sprintf("rp%d.example", r.IntN(250))
			counts[rp]++
			c := testCred(rp, fmt.Sprint("u", i), fmt.Sprintf("c%04d", i))
			c.Extra = nil
			c.RPName = fmt.Sprintf("%s #%d", rp, i)
			cs = append(cs, c)
		}
		putMany(t, s, cs)
		var want []RPInfo
		for rp, n := range counts {
			// All share one creation time, so the last inserted is the newest.
			var last int
			for i, c := range cs {
				if c.RPID == rp {
					last = i
				}
			}
			want = append(want, rpInfo(rp, cs[last].RPName, n))
		}
		slices.SortFunc(want, func(a, b RPInfo) int { return strings.Compare(a.ID, b.ID) })
		wantRPs(t, s, want...)
		if len(want) < 200 {
			t.Fatalf("only %d RPs", len(want))
		}
	})
}

// TestDBSettingsPersistence: settings, the large-blob array and the RP listing
// survive Close and Open, and so does clearing them.
func TestDBSettingsPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	d := createDB(t, path)
	mustSetSettings(t, d, fullSettings())
	blob := []byte("serialized large-blob array")
	if err := d.SetLargeBlobArray(blob); err != nil {
		t.Fatal(err)
	}
	mustPut(t, d, testCred("b.example", "u1", "b1"))
	mustPut(t, d, testCred("a.example", "u1", "a1"))
	mustPut(t, d, testCred("a.example", "u2", "a2"))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openDB(t, path)
	wantSettings(t, d, fullSettings())
	if got, err := d.LargeBlobArray(); err != nil || !bytes.Equal(got, blob) {
		t.Errorf("LargeBlobArray after reopen = %q, %v", got, err)
	}
	wantRPs(t, d, rpInfo("a.example", "The a.example", 2), rpInfo("b.example", "The b.example", 1))
	blocked := DefaultSettings()
	blocked.PINRetries = 0
	mustSetSettings(t, d, blocked)
	if err := d.SetLargeBlobArray(nil); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openDB(t, path)
	wantSettings(t, d, blocked)
	if got, err := d.LargeBlobArray(); err != nil || got != nil {
		t.Errorf("cleared LargeBlobArray after reopen = %q, %v; want nil", got, err)
	}
	if err := d.SetLargeBlobArray([]byte{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openDB(t, path)
	if got, err := d.LargeBlobArray(); err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty LargeBlobArray after reopen = %q (nil: %v), %v; want empty, not nil", got, got == nil, err)
	}
}

// TestSettingsDurableAfterClose: the last SetSettings before Close is what the next
// Open reads, with no other write in between.
func TestSettingsDurableAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	createDB(t, path).Close()
	for retries := DefaultPINRetries; retries >= 0; retries-- {
		d, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		v := fullSettings()
		v.PINRetries = retries
		mustSetSettings(t, d, v)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d, err = Open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Settings()
		d.Close()
		if err != nil || got.PINRetries != retries {
			t.Fatalf("PIN retries after reopen = %d, %v; want %d", got.PINRetries, err, retries)
		}
	}
}

// TestSettingsSurviveKill: each PIN-retry decrement acknowledged by SetSettings is
// in the file even when the writing process is killed (SIGKILL) right afterwards,
// without Close.
func TestSettingsSurviveKill(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	if err := createDB(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	for _, last := range []int{7, 0} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSettingsWriter$")
		cmd.Env = append(os.Environ(), "STORE_TEST_SETTINGS_WRITER="+path)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out := bufio.NewReader(stdout)
		for n := DefaultPINRetries; n >= last; n-- {
			fmt.Fprintln(stdin, n)
			line, err := out.ReadString('\n')
			if want := fmt.Sprintf("ok %d\n", n); err != nil || line != want {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child said %q, %v; want %q", line, err, want)
			}
		}
		// Killed right after the acknowledgement: no Close, no further write.
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		stdin.Close()
		d, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Settings()
		d.Close()
		want := fullSettings()
		want.PINRetries = last
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("after kill: Settings = %+v, %v; want %+v", got, err, want)
		}
	}
}

// TestSettingsWriter is the child of TestSettingsSurviveKill: for each number read
// from stdin it stores settings with that many PIN retries and acknowledges.
func TestSettingsWriter(t *testing.T) {
	path := os.Getenv("STORE_TEST_SETTINGS_WRITER")
	if path == "" {
		t.Skip("helper process")
	}
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		n, err := strconv.Atoi(in.Text())
		if err != nil {
			t.Fatal(err)
		}
		v := fullSettings()
		v.PINRetries = n
		if err := d.SetSettings(v); err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Printf("ok %d\n", n)
	}
	d.Close()
}

// TestOpenDamagedSettings: a settings record that does not decode or holds values
// out of range makes Open refuse the file, read-only, before anything writes to it.
func TestOpenDamagedSettings(t *testing.T) {
	rec := func(r settingsRecord) []byte {
		b, err := ctap2.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good, err := encodeSettings(fullSettings())
	if err != nil {
		t.Fatal(err)
	}
	mustHex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, raw := range map[string][]byte{
		"empty":              {},
		"bad CBOR":           {0xff},
		"truncated":          good[:len(good)-1],
		"trailing bytes":     append(bytes.Clone(good), 0x00),
		"not a map":          mustHex("6873657474696e6773"),              // "settings"
		"wrong type":         mustHex("a2036138" + "0408"),               // {3: "8", 4: 8}
		"retries overflow":   mustHex("a2031bffffffffffffffff" + "0408"), // {3: 2^64-1, 4: 8}
		"duplicate key":      mustHex("a3030803070408"),                  // {3: 8, 3: 7, 4: 8}
		"indefinite map":     mustHex("bf03080408ff"),
		"empty PIN hash":     mustHex("a3014003080408"), // {1: h'', 3: 8, 4: 8}
		"RP ID not UTF-8":    mustHex("a30308040807816" + "2c328"),
		"PIN retries 9":      rec(settingsRecord{PINRetries: 9, UVRetries: 8}),
		"PIN retries -1":     rec(settingsRecord{PINRetries: -1, UVRetries: 8}),
		"UV retries 200":     rec(settingsRecord{PINRetries: 8, UVRetries: 200}),
		"PIN hash 15 bytes":  rec(settingsRecord{PINHash: make([]byte, 15), PINRetries: 8, UVRetries: 8}),
		"PIN hash 32 bytes":  rec(settingsRecord{PINHash: make([]byte, 32), PINRetries: 8, UVRetries: 8}),
		"PIN length 64":      rec(settingsRecord{PINCodePoints: 64, PINRetries: 8, UVRetries: 8}),
		"min PIN length 100": rec(settingsRecord{MinPINLength: 100, PINRetries: 8, UVRetries: 8}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeSettings(raw); err == nil {
				t.Fatalf("decodeSettings(%x) succeeded", raw)
			}
			path := filepath.Join(t.TempDir(), "softkey.db")
			d := createDB(t, path)
			mustPut(t, d, testCred("example.com", "alice", "cred-1"))
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			editDB(t, path, func(m *bolt.Bucket) error { return m.Put(keySettings, raw) })
			snap := takeSnapshot(t, path)
			d, err := Open(path)
			if err == nil {
				d.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrNotSoftkey) || !strings.Contains(err.Error(), "settings record (PIN state) is damaged") ||
				!strings.Contains(err.Error(), path) {
				t.Errorf("Open = %v, want ErrNotSoftkey naming the file and the damaged settings", err)
			}
			snap.check(t, path)
		})
	}
}

// TestOpenGoodSettingsRecord: a valid record written by hand (not by SetSettings)
// opens, so Open's check accepts exactly what decodeSettings accepts.
func TestOpenGoodSettingsRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "softkey.db")
	createDB(t, path).Close()
	// {3: 2, 4: 0, 99: "a later field"}: unknown keys are ignored, like in credential records.
	editDB(t, path, func(m *bolt.Bucket) error {
		return m.Put(keySettings, []byte("\xa3\x03\x02\x04\x00\x18\x63\x6da later field"))
	})
	d := openDB(t, path)
	wantSettings(t, d, Settings{PINRetries: 2})
}

func TestSettingsGolden(t *testing.T) {
	b, err := encodeSettings(fullSettings())
	if err != nil {
		t.Fatal(err)
	}
	const want = "a90150abababababababababababababababab02060305040305f50608078" +
		"26b6578616d706c652e636f6d6d62c3a46e6b2e6578616d706c6508f509f5"
	if got := hex.EncodeToString(b); got != want {
		t.Errorf("settings encoding changed:\n got %s\nwant %s", got, want)
	}
	if b, err := encodeSettings(DefaultSettings()); err != nil || hex.EncodeToString(b) != "a203080408" {
		t.Errorf("default settings encode to %x, %v; want a203080408", b, err)
	}
}

// TestDBRelyingPartiesDamaged: a damaged credential record is an error of
// RelyingParties, not a panic or a wrong listing.
func TestDBRelyingPartiesDamaged(t *testing.T) {
	for name, edit := range map[string]func(creds *bolt.Bucket) error{
		"bad record": func(creds *bolt.Bucket) error {
			h := rpHash("example.com")
			return creds.Put(cat(h[:], []byte("cred-1")), []byte{0xff})
		},
		"wrong key": func(creds *bolt.Bucket) error {
			h := rpHash("example.com")
			rec, err := encodeCredential(testCred("other.example", "bob", "cred-1"), 9)
			if err != nil {
				return err
			}
			return creds.Put(cat(h[:], []byte("cred-1")), rec)
		},
		"short key": func(creds *bolt.Bucket) error { return creds.Put([]byte("short"), []byte{0xa0}) },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "softkey.db")
			d := createDB(t, path)
			mustPut(t, d, testCred("example.com", "alice", "cred-1"))
			mustPut(t, d, testCred("example.com", "bob", "cred-2"))
			d.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { return edit(tx.Bucket(bucketCreds)) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			d = openDB(t, path)
			if rps, err := d.RelyingParties(); !errors.Is(err, errDamaged) {
				t.Errorf("RelyingParties = %v, %v; want a damage error", rps, err)
			}
		})
	}
}

// FuzzDecodeSettings: decoding never panics, and what decodes (or validates)
// survives encode and decode unchanged.
func FuzzDecodeSettings(f *testing.F) {
	add := func(data []byte, s Settings) {
		var flags uint8
		for i, b := range []bool{s.ForcePINChange, s.AlwaysUV, s.EnterpriseAttestation} {
			if b {
				flags |= 1 << i
			}
		}
		f.Add(data, s.PINHash, s.PINCodePoints, s.PINRetries, s.UVRetries, s.MinPINLength,
			strings.Join(s.MinPINLengthRPIDs, ","), flags)
	}
	for _, s := range []Settings{DefaultSettings(), fullSettings(), {}} {
		b, err := encodeSettings(s)
		if err != nil {
			f.Fatal(err)
		}
		add(b, s)
	}
	for _, s := range invalidSettings() {
		add([]byte{0xa0}, s)
	}
	add(nil, Settings{})
	add([]byte{0xbf, 0xff}, Settings{})
	add([]byte{0xa3, 0x01, 0x40, 0x03, 0x08, 0x04, 0x08}, Settings{})
	f.Fuzz(func(t *testing.T, data, pinHash []byte, codePoints, pinRetries, uvRetries, minLen int, rpIDs string, flags uint8) {
		roundTrip := func(s Settings) {
			t.Helper()
			enc, err := encodeSettings(s)
			if err != nil {
				t.Fatalf("valid settings do not encode: %v\n%+v", err, s)
			}
			got, err := decodeSettings(enc)
			if err != nil {
				t.Fatalf("encoded settings do not decode: %v\n%x", err, enc)
			}
			if !reflect.DeepEqual(got, s.clone()) {
				t.Fatalf("round trip changed the settings:\n%+v\n%+v", s, got)
			}
			if enc2, err := encodeSettings(got); err != nil || !bytes.Equal(enc, enc2) {
				t.Fatalf("encoding is not stable: %x vs %x (%v)", enc, enc2, err)
			}
		}
		if s, err := decodeSettings(data); err == nil {
			if err := s.validate(); err != nil {
				t.Fatalf("decoded settings are invalid: %v\n%+v", err, s)
			}
			roundTrip(s)
		}
		s := Settings{
			PINHash: pinHash, PINCodePoints: codePoints, PINRetries: pinRetries, UVRetries: uvRetries,
			MinPINLength: minLen, ForcePINChange: flags&1 != 0, AlwaysUV: flags&2 != 0,
			EnterpriseAttestation: flags&4 != 0,
		}
		if rpIDs != "" {
			s.MinPINLengthRPIDs = strings.Split(rpIDs, ",")
		}
		if s.validate() != nil {
			if _, err := encodeSettings(s); err == nil {
				t.Fatalf("invalid settings encoded: %+v", s)
			}
			return
		}
		roundTrip(s)
	})
}
