package ctaphid

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctapkit/ctapkit/transport"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const goldenTranscript = "testdata/session.transcript"

// transcriptServerOptions make the Server's side of the golden session
// reproducible: channel IDs from seqReader, no keepalive ticks.
func transcriptServerOptions(log func(string, []byte)) ServerOptions {
	return ServerOptions{Rand: &seqReader{}, Version: [3]byte{1, 2, 3}, KeepaliveInterval: time.Hour, Log: log}
}

// TestTranscript logs a host session with NewFrameLogger, parses the log back and
// checks it against the packets actually sent and received and against the
// golden file.
func TestTranscript(t *testing.T) {
	var buf, serverBuf bytes.Buffer
	rec := &recorder{}
	logger := NewFrameLogger(&buf)
	serverRec := &recorder{}
	serverLogger := NewFrameLogger(&serverBuf)
	d, _ := openDevice(t, &fakeHandler{},
		transcriptServerOptions(func(dir string, p []byte) { serverRec.log(dir, p); serverLogger(dir, p) }),
		Options{Rand: &seqReader{n: 0xa0}, Log: func(dir string, p []byte) { rec.log(dir, p); logger(dir, p) }})
	ctx := testCtx(t)
	if err := d.Ping(ctx, pattern(130)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Transact(ctx, transport.CmdCBOR, []byte{0x04}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Transact(ctx, transport.CmdMsg, []byte{0x00, 0x03, 0x00, 0x00}); err != nil {
		t.Fatal(err)
	}
	if err := d.Wink(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Transact(ctx, 0x02, []byte("?")); err == nil { // an unknown command: ERROR
		t.Fatal("unknown command accepted")
	}
	if err := d.Lock(ctx, 0); err != nil {
		t.Fatal(err)
	}

	frames, err := ParseTranscript(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("ParseTranscript: %v\n%s", err, buf.String())
	}
	checkFrames(t, frames, rec.frames)
	// The Server's log of the same session is the mirror image.
	serverFrames, err := ParseTranscript(&serverBuf)
	if err != nil {
		t.Fatalf("ParseTranscript(server log): %v", err)
	}
	mirrored := make([]Frame, len(serverFrames))
	for i, f := range serverFrames {
		mirrored[i] = Frame{Dir: map[string]string{"send": "recv", "recv": "send"}[f.Dir], Packet: f.Packet}
	}
	checkFrames(t, mirrored, rec.frames)
	checkFrames(t, serverFrames, serverRec.frames)

	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenTranscript), 0o755); err != nil {
			t.Fatal(err)
		}
		header := "# A host session against the Server, logged by the host (see TestTranscript).\n" +
			"# Regenerate with: go test -run TestTranscript -update ./transport/ctaphid/\n\n"
		if err := os.WriteFile(goldenTranscript, append([]byte(header), buf.Bytes()...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(goldenTranscript)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	goldenFrames, err := ParseTranscript(bytes.NewReader(golden))
	if err != nil {
		t.Fatalf("ParseTranscript(%s): %v", goldenTranscript, err)
	}
	checkFrames(t, goldenFrames, rec.frames)
	if !strings.HasSuffix(string(golden), buf.String()) {
		t.Errorf("the log differs from %s (run with -update if the change is intended):\n%s", goldenTranscript, buf.String())
	}
}

func checkFrames(t *testing.T, got, want []Frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Dir != want[i].Dir || !bytes.Equal(got[i].Packet, want[i].Packet) {
			t.Fatalf("frame %d: %s % x, want %s % x", i, got[i].Dir, got[i].Packet, want[i].Dir, want[i].Packet)
		}
	}
}

// TestTranscriptReplay plays the host's side of the golden transcript to a fresh
// Server and checks that it answers with exactly the recorded packets: a -vv log
// is a replayable test.
func TestTranscriptReplay(t *testing.T) {
	golden, err := os.ReadFile(goldenTranscript)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := ParseTranscript(bytes.NewReader(golden))
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) == 0 {
		t.Fatal("empty transcript")
	}
	_, h := startServer(t, &fakeHandler{}, transcriptServerOptions(nil))
	for i, f := range frames {
		switch f.Dir {
		case "send":
			h.send(f.Packet)
		case "recv":
			p, err := h.recvPacket(waitLimit)
			if err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if !bytes.Equal(p, f.Packet) {
				t.Fatalf("frame %d: server sent % x, transcript has % x", i, p, f.Packet)
			}
		}
	}
	h.expectSilence(20 * time.Millisecond)
}

func TestFrameLoggerFormat(t *testing.T) {
	var buf bytes.Buffer
	log := NewFrameLogger(&buf)
	log("send", initPacket(0x01020304, transport.CmdPing, []byte("hi|there")))
	cont, _ := fragment(0xcafebabe, transport.CmdCBOR, pattern(100))
	log("recv", cont[1])
	log("recv", []byte{1, 2, 3})          // a runt: header only says so
	log("send", make([]byte, ReportSize)) // all zero: one line is kept
	out := buf.String()
	for _, want := range []string{
		"send 01020304 PING len=8\n",
		"recv cafebabe cont seq=0\n",
		"recv short packet of 3 bytes\n",
		"send 00000000 cont seq=0\n",
		"hi|there.|", // a | in the ASCII column must not confuse the parser
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	frames, err := ParseTranscript(strings.NewReader(out))
	if err != nil {
		t.Fatalf("ParseTranscript: %v\n%s", err, out)
	}
	if len(frames) != 4 {
		t.Fatalf("%d frames, want 4", len(frames))
	}
	if !bytes.Equal(frames[0].Packet, initPacket(0x01020304, transport.CmdPing, []byte("hi|there"))) ||
		!bytes.Equal(frames[1].Packet, cont[1]) ||
		!bytes.Equal(frames[2].Packet[:4], []byte{1, 2, 3, 0}) ||
		!bytes.Equal(frames[3].Packet, make([]byte, ReportSize)) {
		t.Fatalf("frames do not round-trip:\n%s", out)
	}
}

func TestParseTranscriptErrors(t *testing.T) {
	for name, in := range map[string]string{
		"bad direction":  "sent 01020304 PING\n  00000000  01 02\n",
		"dump first":     "  00000000  01 02 03\n",
		"bad offset":     "send x\n  00000010  01 02 03\n",
		"bad hex":        "send x\n  00000000  01 0g 03\n",
		"long hex":       "send x\n  00000000  01 020 03\n",
		"too long":       "send x\n" + dumpLines(80),
		"offset not hex": "send x\n  zz  01\n",
		"ascii only":     "send x\n  |abc|\n",
	} {
		if _, err := ParseTranscript(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted %q", name, in)
		}
	}
	frames, err := ParseTranscript(strings.NewReader("# comment\n\nrecv anything\n\tsend\n"))
	if err == nil {
		t.Fatalf("tab-indented non-hex line accepted: %v", frames)
	}
	frames, err = ParseTranscript(strings.NewReader("# comment\n\nrecv anything\n"))
	if err != nil || len(frames) != 1 || !bytes.Equal(frames[0].Packet, make([]byte, ReportSize)) {
		t.Fatalf("header-only frame: %v, %v", frames, err)
	}
}

// dumpLines is an indented hex dump of n bytes.
func dumpLines(n int) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(hex.Dump(make([]byte, n)), "\n") {
		if line != "" {
			b.WriteString("  " + line)
		}
	}
	return b.String()
}

// FuzzParseTranscript: the parser never panics, and what it reads survives a
// round trip through NewFrameLogger.
func FuzzParseTranscript(f *testing.F) {
	var buf bytes.Buffer
	log := NewFrameLogger(&buf)
	p := initPacket(0x01020304, transport.CmdCBOR, pattern(100))
	log("send", p)
	log("recv", append([]byte{1, 2, 3, 4, 0}, pattern(59)...))
	f.Add(buf.String())
	f.Add("send x\n  00000000  ff ff |..|\n")
	f.Add("recv\n  |abc|\n")
	f.Fuzz(func(t *testing.T, s string) {
		frames, err := ParseTranscript(strings.NewReader(s))
		if err != nil {
			return
		}
		var out bytes.Buffer
		log := NewFrameLogger(&out)
		for _, fr := range frames {
			log(fr.Dir, fr.Packet)
		}
		again, err := ParseTranscript(&out)
		if err != nil {
			t.Fatalf("re-parsing our own log: %v", err)
		}
		if len(again) != len(frames) {
			t.Fatalf("%d frames, then %d", len(frames), len(again))
		}
		for i := range frames {
			// the logger drops trailing zero padding lines; compare without it
			a, b := bytes.TrimRight(frames[i].Packet, "\x00"), bytes.TrimRight(again[i].Packet, "\x00")
			if frames[i].Dir != again[i].Dir || !bytes.Equal(a, b) {
				t.Fatalf("frame %d changed: %s % x -> %s % x", i, frames[i].Dir, a, again[i].Dir, b)
			}
		}
	})
}
