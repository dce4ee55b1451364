package softkey

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/internal/benchratio"
	"github.com/ctapkit/ctapkit/softkey/store"
)

// Capacity benchmarks (issue 8), each a ratio measured in one run: the two sides
// alternate, so machine load moves both alike, and the ratio is of median times.
//
//	go test -run '^$' -bench Capacity ./softkey/

// capacityTargetRP has exactly one credential in every benchmark state; the others
// belong to other RPs, capacityPerRP each.
const capacityTargetRP = "target.capacity.example"

// benchFormats are the state formats every capacity benchmark runs on: the
// passphrase of an encrypted state (with the default argon2id parameters, as
// softkey init makes it), "" for an unencrypted one.
var benchFormats = []struct{ name, passphrase string }{
	{"plain", ""},
	{"encrypted", "capacity benchmark passphrase"},
}

// benchState creates a bbolt state of n resident credentials at path: the target's
// (index 0) and n-1 of other RPs. It returns the target's ID.
func benchState(b *testing.B, path string, n int, passphrase string) []byte {
	b.Helper()
	cs, _ := capacityCredentials(b, n, 0)
	cs[0].RPID, cs[0].RPIDHash = capacityTargetRP, ctap2.RPIDHash(capacityTargetRP)
	opts := store.CreateOptions{Passphrase: []byte(passphrase), NoPassphrase: passphrase == ""}
	st, err := store.Create(path, opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := st.PutCredentials(cs); err != nil {
		b.Fatal(err)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	return cs[0].ID
}

// benchOpen starts a softkey on the state at path, with room for more resident
// credentials than the default limit.
func benchOpen(b *testing.B, path, passphrase string) *Authenticator {
	b.Helper()
	st, err := store.OpenWith(path, store.OpenOptions{Passphrase: func() ([]byte, error) { return []byte(passphrase), nil }})
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(st, Config{MaxResidentCredentials: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a.Close() })
	return a
}

// benchCBOR encodes one request for HandleCBOR.
func benchCBOR(b *testing.B, cmd ctap2.Command, req any) []byte {
	b.Helper()
	body, err := ctap2.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	return append([]byte{byte(cmd)}, body...)
}

func benchCall(b *testing.B, a *Authenticator, msg []byte) {
	if resp := a.HandleCBOR(context.Background(), msg, nil); resp[0] != 0 {
		b.Fatalf("status 0x%02x", resp[0])
	}
}

// BenchmarkCapacityGetAssertion: getAssertion through HandleCBOR on a bbolt state
// holding 100,000 resident credentials vs one holding 10, both unencrypted or both
// encrypted; the asserted RP has one credential in each. x-10creds is the ratio
// (target ≤ 1.3); ns/op counts one of each.
func BenchmarkCapacityGetAssertion(b *testing.B) {
	for _, f := range benchFormats {
		b.Run(f.name, func(b *testing.B) {
			dir := b.TempDir()
			bigID := benchState(b, filepath.Join(dir, "100k.db"), 100_000, f.passphrase)
			smallID := benchState(b, filepath.Join(dir, "10.db"), 10, f.passphrase)
			big := benchOpen(b, filepath.Join(dir, "100k.db"), f.passphrase)
			small := benchOpen(b, filepath.Join(dir, "10.db"), f.passphrase)
			for _, tc := range []struct {
				name               string
				allowBig, allowSml []byte // nil: a discoverable request
			}{
				{name: "allowList", allowBig: bigID, allowSml: smallID},
				{name: "discoverable"},
			} {
				b.Run(tc.name, func(b *testing.B) { benchGetAssertion(b, big, small, tc.allowBig, tc.allowSml) })
			}
		})
	}
}

func benchGetAssertion(b *testing.B, big, small *Authenticator, bigID, smallID []byte) {
	cdh := make([]byte, 32)
	req := func(id []byte) []byte {
		r := &ctap2.GetAssertionRequest{RPID: capacityTargetRP, ClientDataHash: cdh}
		if id != nil {
			r.AllowList = []ctap2.CredentialDescriptor{{Type: ctap2.CredentialType, ID: id}}
		}
		return benchCBOR(b, ctap2.CmdGetAssertion, r)
	}
	bigReq, smallReq := req(bigID), req(smallID)
	onBig, onSmall := func() { benchCall(b, big, bigReq) }, func() { benchCall(b, small, smallReq) }
	onBig() // warm up: the signer cache, the pages of the path to the record
	onSmall()
	benchratio.Compare(b, onBig, onSmall).Report(b, "x-10creds", "100k", "10")
}

// BenchmarkCapacityMakeCredential: makeCredential rk through HandleCBOR on bbolt
// states, each a durable (fsynced) transaction: on an empty state, on one holding
// 100,000 credentials, and a bare store.PutCredential of the same size as the
// floor, all of one format. Reported: the throughput of each (mc/s, mc-100k/s,
// put/s), x-put (an empty state's makeCredential / PutCredential) and x-empty
// (100k / empty).
func BenchmarkCapacityMakeCredential(b *testing.B) {
	for _, f := range benchFormats {
		b.Run(f.name, func(b *testing.B) {
			dir := b.TempDir()
			benchState(b, filepath.Join(dir, "100k.db"), 100_000, f.passphrase)
			benchState(b, filepath.Join(dir, "empty.db"), 1, f.passphrase)
			benchState(b, filepath.Join(dir, "put.db"), 1, f.passphrase)
			big := benchOpen(b, filepath.Join(dir, "100k.db"), f.passphrase)
			empty := benchOpen(b, filepath.Join(dir, "empty.db"), f.passphrase)
			raw := benchOpen(b, filepath.Join(dir, "put.db"), f.passphrase).st
			benchMakeCredential(b, big, empty, raw)
		})
	}
}

func benchMakeCredential(b *testing.B, big, empty *Authenticator, raw store.Store) {
	putCS, _ := capacityCredentials(b, 1, 0)
	n := 0
	mc := func(a *Authenticator) func() {
		return func() {
			n++
			user := binary.BigEndian.AppendUint64(nil, uint64(n))
			req := residentRequest("mc.capacity.example", user)
			req.User.Name, req.User.DisplayName = fmt.Sprintf("user-%d", n), ""
			benchCall(b, a, benchCBOR(b, ctap2.CmdMakeCredential, req))
		}
	}
	put := func() {
		n++
		c := *putCS[0]
		c.ID = binary.BigEndian.AppendUint64(append([]byte{credIDResident}, make([]byte, 23)...), uint64(n))
		c.User.ID = c.ID[24:]
		if err := raw.PutCredential(&c); err != nil {
			b.Fatal(err)
		}
	}
	ops := []func(){mc(empty), mc(big), put}
	for _, op := range ops {
		op() // warm up
	}
	times := benchratio.Times(b, ops...)
	tEmpty, tBig, tPut := benchratio.Median(times[0]), benchratio.Median(times[1]), benchratio.Median(times[2])
	b.ReportMetric(float64(time.Second)/float64(tEmpty), "mc/s")
	b.ReportMetric(float64(time.Second)/float64(tBig), "mc-100k/s")
	b.ReportMetric(float64(time.Second)/float64(tPut), "put/s")
	b.ReportMetric(float64(tEmpty)/float64(tPut), "x-put")
	b.ReportMetric(float64(tBig)/float64(tEmpty), "x-empty")
}

// BenchmarkCapacityServeRSS: the resident memory of `ctapkit softkey serve --udp`
// on a state of 100,000 credentials (target ≤ 64 MB) and on one of 10, each after
// getAssertions through `ctapkit -d udp:` (one process per iteration and state);
// unencrypted states and encrypted ones (default argon2id parameters, whose 64 MiB
// at open set an encrypted server's peak whatever it stores). Reported: MB-100k and
// MB-10 (VmRSS at the end), MB-peak-100k (VmHWM) and x-10creds, the ratio of the
// two VmRSS.
func BenchmarkCapacityServeRSS(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc/PID/status")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		b.Skip("no go command to build ctapkit with")
	}
	bin := filepath.Join(b.TempDir(), "ctapkit")
	build := exec.Command(goCmd, "build", "-o", bin)
	if exec.Command("pkg-config", "--exists", "libpcsclite").Run() != nil {
		build.Args = append(build.Args, "-tags", "nopcsc") // as make build does
	}
	build.Args = append(build.Args, "github.com/ctapkit/ctapkit/cmd/ctapkit")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building ctapkit: %v\n%s", err, out)
	}
	for _, f := range benchFormats {
		b.Run(f.name, func(b *testing.B) { benchServeRSS(b, bin, f.passphrase) })
	}
}

func benchServeRSS(b *testing.B, bin, passphrase string) {
	dir := b.TempDir()
	benchState(b, filepath.Join(dir, "100k.db"), 100_000, passphrase)
	benchState(b, filepath.Join(dir, "10.db"), 10, passphrase)
	big := startServe(b, bin, filepath.Join(dir, "100k.db"), passphrase)
	small := startServe(b, bin, filepath.Join(dir, "10.db"), passphrase)
	big.getAssertion(b)
	small.getAssertion(b)
	first := big.status(b, "VmRSS")
	for b.Loop() {
		big.getAssertion(b)
		small.getAssertion(b)
	}
	rssBig, peak, rssSmall := big.status(b, "VmRSS"), big.status(b, "VmHWM"), small.status(b, "VmRSS")
	anon, file := big.status(b, "RssAnon"), big.status(b, "RssFile")
	big.stop(b)
	small.stop(b)
	fi, err := os.Stat(filepath.Join(dir, "100k.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("softkey serve, 100,000 credentials (state file %.1f MB, mapped by bbolt): VmRSS %.1f MB after one getAssertion, "+
		"%.1f MB at the end (%.1f MB anonymous, %.1f MB file pages), peak %.1f MB; 10 credentials: %.1f MB",
		float64(fi.Size())/(1<<20), first, rssBig, anon, file, peak, rssSmall)
	b.ReportMetric(rssBig, "MB-100k")
	b.ReportMetric(peak, "MB-peak-100k")
	b.ReportMetric(rssSmall, "MB-10")
	b.ReportMetric(rssBig/rssSmall, "x-10creds")
}

type servedSoftkey struct {
	bin, addr string
	cmd       *exec.Cmd
	n         int
}

var servingLine = regexp.MustCompile(`^serving softkey .* on UDP (\S+)$`)

// startServe runs `ctapkit softkey serve --state path --udp=127.0.0.1:0` and reads
// the address it prints.
func startServe(b *testing.B, bin, path, passphrase string) *servedSoftkey {
	b.Helper()
	cmd := exec.Command(bin, "softkey", "serve", "--state", path, "--udp=127.0.0.1:0")
	cmd.Env = append(os.Environ(), "CTAPKIT_SOFTKEY_PRESENCE=auto", "CTAPKIT_SOFTKEY_PASSPHRASE="+passphrase)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				line <- m[1]
			}
		}
	}()
	select {
	case addr := <-line:
		return &servedSoftkey{bin: bin, addr: addr, cmd: cmd}
	case <-time.After(30 * time.Second):
		b.Fatalf("%s: softkey serve printed no UDP address", path)
	}
	return nil
}

// getAssertion runs `ctapkit -d udp:ADDR get-assertion` for the target RP.
func (s *servedSoftkey) getAssertion(b *testing.B) {
	b.Helper()
	s.n++
	cdh := make([]byte, 32)
	binary.BigEndian.PutUint64(cdh, uint64(s.n))
	out, err := exec.Command(s.bin, "-d", "udp:"+s.addr, "get-assertion", "--rp", capacityTargetRP,
		"--client-data-hash", hex.EncodeToString(cdh), "--json").Output()
	if err != nil {
		b.Fatalf("ctapkit get-assertion over udp:%s: %v %s", s.addr, err, stderrOf(err))
	}
	var res struct {
		Assertions []struct{ SignCount uint32 } `json:"assertions"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Assertions) != 1 {
		b.Fatalf("get-assertion output %q: %v", out, err)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// status reads a "kB" field of /proc/PID/status, in MB.
func (s *servedSoftkey) status(b *testing.B, field string) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatalf("%s: %q", field, rest)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no %s in /proc/PID/status", field)
	return 0
}

// stop ends the server as Ctrl-C would; it writes its state back and exits 0.
func (s *servedSoftkey) stop(b *testing.B) {
	b.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		b.Errorf("softkey serve: %v", err)
	}
}
