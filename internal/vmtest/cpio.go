//go:build linux

package vmtest

import (
	"fmt"
	"io"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks as an initramfs.
// Writing it here rather than with cpio(1) lets the archive hold /dev/console
// without root and keeps the build free of find|cpio pipelines.
type cpioWriter struct {
	w   io.Writer
	ino int
	n   int64 // bytes written, for padding
	err error
}

// Mode bits of cpio entries.
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioCharDev = 0o020000
)

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// entry writes one header, name and body. rdev is (major, minor) of a device node.
func (c *cpioWriter) entry(name string, mode uint32, body []byte, rmajor, rminor int) {
	c.ino++
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(body), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(body)
	c.pad()
}

func (c *cpioWriter) dir(name string)            { c.entry(name, cpioDir|0o755, nil, 0, 0) }
func (c *cpioWriter) file(name string, b []byte) { c.entry(name, cpioFile|0o644, b, 0, 0) }
func (c *cpioWriter) exec(name string, b []byte) { c.entry(name, cpioFile|0o755, b, 0, 0) }
func (c *cpioWriter) charDev(name string, maj, min int) {
	c.entry(name, cpioCharDev|0o600, nil, maj, min)
}

// close writes the trailer.
func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, nil, 0, 0)
	return c.err
}
