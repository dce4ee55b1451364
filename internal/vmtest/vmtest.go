// Package vmtest boots a small Linux VM under QEMU to run commands that need kernel
// features this machine's kernel lacks (uhid, hidraw). The recipe and its
// measurements are in the project's VM notes; in short:
//
//   - the kernel is Debian's linux-image-amd64 of the day, downloaded with apt-get
//     download and extracted (never installed); QEMU boots its uncompressed vmlinux
//     through the PVH entry point, which skips decompressing under TCG;
//   - the initramfs holds a static busybox, the init script (init.sh) and the
//     handful of modules for uhid, virtio and 9p;
//   - the host's root file system is the guest's, read-only over 9p with a tmpfs
//     overlay, so host-built binaries run inside at their host paths and writes
//     land in guest RAM; the command's stdout, stderr and exit status come back
//     over virtio-serial ports.
//
// The kit (kernel, modules, initramfs) is built once per machine and kernel
// version under the user's cache directory. Only one VM runs at a time on the
// machine (a file lock in the cache directory): without KVM, two VMs on two
// cores each take several times as long.
//
// Environment: CTAPKIT_VM_CACHE (cache directory), CTAPKIT_VM_KERNEL (a kernel
// package to pin, e.g. linux-image-6.1.0-57-amd64), CTAPKIT_VM_ACCEL (kvm where
// it works; default tcg), CTAPKIT_VM_DEBUG=1 (full kernel log, run folder kept),
// CTAPKIT_SKIP_VM=1 (skip VM tests), CTAPKIT_REQUIRE_VM=1 or CI=true (fail
// rather than skip when no VM can run).
package vmtest

import (
	"errors"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// ErrUnavailable reports why no VM can run here (no root to install packages, no
// network for the first kernel download, not Linux on x86-64).
var ErrUnavailable = errors.New("VM unavailable for tests")

// ErrTimeout is returned by Run when the watchdog killed the VM.
var ErrTimeout = errors.New("vmtest: VM timed out")

// Packages are the Debian packages the kit needs on the host. fido2-tools is not
// needed to boot, but every VM test so far drives libfido2's tools inside.
var Packages = []string{"qemu-system-x86", "busybox-static", "kmod", "xz-utils", "fido2-tools"}

// Kit is a prepared VM: a kernel, its modules and an initramfs in the cache.
type Kit struct {
	// KernelVersion is the guest's `uname -r`, e.g. 6.1.0-57-amd64.
	KernelVersion string
	// Dir holds the kit: vmlinux, initramfs.cpio.gz and the module tree under
	// root/lib/modules.
	Dir string

	cacheDir string // parent of Dir; holds the lock file
}

// RunOptions says what to run inside the VM.
type RunOptions struct {
	// Args is the command and its arguments; the command is looked up in the
	// guest's PATH (the host's file system).
	Args []string
	// Env is the command's environment; nil means the host process's.
	Env []string
	// Dir is the working directory (a host path); empty means the current one.
	Dir string
	// Timeout bounds the run from starting QEMU to its exit, boot included; a
	// watchdog then kills QEMU. Default 2 minutes.
	Timeout time.Duration
	// MemoryMB is the guest's RAM; default 512. Files the command writes live in
	// it.
	MemoryMB int
	// Share, if set, is a host directory mounted read-write at the same path in
	// the guest, to get files out (everything else written inside is discarded).
	Share string
	// Console, if set, receives the guest's kernel console log after the run.
	Console io.Writer
}

// Required reports whether tests must fail rather than skip when no VM can run:
// on CI (CI=true) and when CTAPKIT_REQUIRE_VM=1.
func Required() bool {
	return os.Getenv("CTAPKIT_REQUIRE_VM") == "1" || os.Getenv("CI") == "true"
}

var shared struct {
	once sync.Once
	kit  *Kit
	err  error
}

// Shared returns the kit for this test process, preparing it on first use (which
// may install packages and download a kernel). Where it cannot be prepared the
// test is skipped with the reason, or fails when Required. CTAPKIT_SKIP_VM=1 skips
// VM tests outright (not on CI).
func Shared(t testing.TB) *Kit {
	t.Helper()
	if os.Getenv("CTAPKIT_SKIP_VM") == "1" && !Required() {
		t.Skip("skipping VM test: CTAPKIT_SKIP_VM=1")
	}
	shared.once.Do(func() {
		start := time.Now()
		shared.kit, shared.err = Prepare(t.Context())
		if shared.err == nil {
			t.Logf("vmtest: kit %s ready in %v", shared.kit.Dir, time.Since(start).Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		if Required() {
			t.Fatalf("%v (required on CI: CI=true or CTAPKIT_REQUIRE_VM=1)", shared.err)
		}
		t.Skipf("skipping VM test: %v", shared.err)
	}
	return shared.kit
}
