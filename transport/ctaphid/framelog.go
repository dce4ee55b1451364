package ctaphid

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Frame is one packet of a transcript: Dir is "send" or "recv" as seen by the side
// that logged it.
type Frame struct {
	Dir    string
	Packet []byte
}

// NewFrameLogger returns an Options.Log / ServerOptions.Log function that writes
// each packet to w as an annotated hex dump, the format ParseTranscript reads. A
// -vv log of a misbehaving key is therefore a replayable test as it stands. Lines
// that are all zero padding at the end of a packet are left out. The function is
// safe for concurrent use; write errors are ignored.
func NewFrameLogger(w io.Writer) func(dir string, pkt []byte) {
	var mu sync.Mutex
	return func(dir string, pkt []byte) {
		var b strings.Builder
		b.WriteString(dir)
		b.WriteByte(' ')
		b.WriteString(describePacket(pkt))
		b.WriteByte('\n')
		for _, line := range strings.SplitAfter(hex.Dump(pkt[:dumpLen(pkt)]), "\n") {
			if line != "" {
				b.WriteString("  ")
				b.WriteString(line)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		io.WriteString(w, b.String())
	}
}

// describePacket is the annotation of a transcript header line: channel and
// command or sequence number.
func describePacket(pkt []byte) string {
	p := normalize(pkt)
	if p == nil {
		return fmt.Sprintf("short packet of %d bytes", len(pkt))
	}
	if !isInit(p) {
		return fmt.Sprintf("%08x cont seq=%d", packetCID(p), p[4])
	}
	cmd, n := initHeader(p)
	return fmt.Sprintf("%08x %v len=%d", packetCID(p), cmd, n)
}

// dumpLen is the length of pkt without its trailing zero lines (16 bytes each),
// but at least one line.
func dumpLen(pkt []byte) int {
	last := len(pkt) - 1
	for last >= 0 && pkt[last] == 0 {
		last--
	}
	return min(len(pkt), max(16, (last/16+1)*16))
}

// ParseTranscript reads the format written by NewFrameLogger: a header line per
// packet that starts with "send" or "recv" (the rest is annotation), followed by
// indented hex.Dump lines. Blank lines and lines starting with '#' are comments.
// Packets are zero-padded to ReportSize, restoring what the logger left out.
func ParseTranscript(r io.Reader) ([]Frame, error) {
	var frames []Frame
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			continue
		case line[0] != ' ' && line[0] != '\t':
			dir, _, _ := strings.Cut(trimmed, " ")
			if dir != "send" && dir != "recv" {
				return nil, fmt.Errorf("ctaphid: transcript line %d: want send or recv, got %q", n, dir)
			}
			frames = append(frames, Frame{Dir: dir})
			continue
		case len(frames) == 0:
			return nil, fmt.Errorf("ctaphid: transcript line %d: hex dump before the first send or recv line", n)
		}
		f := &frames[len(frames)-1]
		hexPart, _, _ := strings.Cut(trimmed, "|") // the ASCII column may contain anything
		fields := strings.Fields(hexPart)
		if len(fields) == 0 {
			return nil, fmt.Errorf("ctaphid: transcript line %d: no offset before the ASCII column", n)
		}
		off, err := strconv.ParseUint(fields[0], 16, 32)
		if err != nil || int(off) != len(f.Packet) {
			return nil, fmt.Errorf("ctaphid: transcript line %d: offset %q, want %08x", n, fields[0], len(f.Packet))
		}
		for _, h := range fields[1:] {
			b, err := strconv.ParseUint(h, 16, 8)
			if err != nil || len(h) != 2 {
				return nil, fmt.Errorf("ctaphid: transcript line %d: bad hex byte %q", n, h)
			}
			f.Packet = append(f.Packet, byte(b))
		}
		if len(f.Packet) > ReportSize {
			return nil, fmt.Errorf("ctaphid: transcript line %d: packet longer than %d bytes", n, ReportSize)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ctaphid: reading transcript: %w", err)
	}
	for i := range frames {
		p := make([]byte, ReportSize)
		copy(p, frames[i].Packet)
		frames[i].Packet = p
	}
	return frames, nil
}
