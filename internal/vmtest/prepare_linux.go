package vmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

//go:embed init.sh
var initScript []byte

// bootModules are loaded by init, with their dependencies first (modprobe
// --show-depends orders them): uhid and a driver for the hidraw nodes, virtio-pci
// for the devices, 9p and overlay for the host's root, virtio-rng so that Go
// programs do not wait for entropy, virtio_console for stdout/stderr/status.
var bootModules = []string{"uhid", "hid-generic", "virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio-rng", "virtio_console"}

// kitFile records a finished kit; its presence is what marks the kit complete.
const kitFile = "kit.json"

// CacheDir is where kits are kept: $CTAPKIT_VM_CACHE, else ctapkit/vm in the
// user's cache directory.
func CacheDir() (string, error) {
	if d := os.Getenv("CTAPKIT_VM_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "ctapkit", "vm"), nil
}

// Prepare makes sure of the kit: the host packages (installed when missing and
// running as root), and the kernel and initramfs in the cache for the kernel
// version linux-image-amd64 currently depends on (CTAPKIT_VM_KERNEL=PACKAGE
// pins one), built once per machine and version. Offline, the newest kit in the
// cache is used. Errors wrap ErrUnavailable when the host cannot have a kit.
func Prepare(ctx context.Context) (*Kit, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("%w: the VM kit is x86-64 only, this is %s", ErrUnavailable, runtime.GOARCH)
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, fmt.Errorf("%w: no cache directory: %v", ErrUnavailable, err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	// Prefer the EvalSymlinks form: the guest bind-mounts paths below it.
	if c, err := filepath.EvalSymlinks(cache); err == nil {
		cache = c
	}
	unlock, err := lock(ctx, cache)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Under the lock: two test binaries must not run apt-get at once.
	if err := ensurePackages(ctx); err != nil {
		return nil, err
	}

	// Debian's kernel moves on every few weeks; asking apt (0.7 s) once a day
	// is often enough to follow it.
	if k := newestKit(cache); k != nil && os.Getenv("CTAPKIT_VM_KERNEL") == "" && time.Since(k.checked()) < kitRecheck {
		return k, nil
	}
	pkg, pkgErr := kernelPackage(ctx)
	if pkgErr == nil {
		kver := strings.TrimPrefix(pkg, "linux-image-")
		if k, err := loadKit(cache, kver); err == nil {
			now := time.Now()
			os.Chtimes(filepath.Join(k.Dir, kitFile), now, now) // checked now
			return k, nil
		}
		k, err := buildKit(ctx, cache, pkg, kver)
		if err == nil {
			removeOtherKits(cache, kver)
			return k, nil
		}
		pkgErr = err
	}
	// Offline, or the mirror moved on: any kit already built will do.
	if k := newestKit(cache); k != nil {
		return k, nil
	}
	return nil, pkgErr
}

// ensurePackages installs the missing Packages with apt-get when running as root.
func ensurePackages(ctx context.Context) error {
	out, _ := exec.CommandContext(ctx, "dpkg-query", append([]string{"-W", "-f=${Package} ${Status}\n"}, Packages...)...).Output()
	var missing []string
	for _, p := range Packages {
		if !strings.Contains(string(out), p+" install ok installed\n") {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		if os.Geteuid() != 0 {
			return fmt.Errorf("%w: missing packages %s (run as root, or apt-get install --no-install-recommends them)",
				ErrUnavailable, strings.Join(missing, " "))
		}
		if _, err := exec.LookPath("apt-get"); err != nil {
			return fmt.Errorf("%w: missing packages %s and no apt-get", ErrUnavailable, strings.Join(missing, " "))
		}
		if err := aptGet(ctx, "", "update", "-qq"); err != nil {
			return fmt.Errorf("%w: apt-get update: %v", ErrUnavailable, err)
		}
		args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)
		if err := aptGet(ctx, "", args...); err != nil {
			return fmt.Errorf("%w: installing %s: %v", ErrUnavailable, strings.Join(missing, " "), err)
		}
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return fmt.Errorf("%w: qemu-system-x86_64 not found", ErrUnavailable)
	}
	if !staticELF("/bin/busybox") {
		return fmt.Errorf("%w: /bin/busybox is not a static binary (install busybox-static)", ErrUnavailable)
	}
	return nil
}

func aptGet(ctx context.Context, dir string, args ...string) error {
	if os.Geteuid() == 0 {
		// apt would drop to _apt, which cannot write a private download folder.
		args = append([]string{"-o", "APT::Sandbox::User=root"}, args...)
	}
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, lastLine(string(out)))
	}
	return nil
}

// staticELF reports whether path is an ELF binary without a program interpreter.
func staticELF(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// kernelPackage names the kernel image package to use: $CTAPKIT_VM_KERNEL, else
// what linux-image-amd64 depends on (after apt-get update when root and the
// package lists know nothing of it).
func kernelPackage(ctx context.Context) (string, error) {
	if p := os.Getenv("CTAPKIT_VM_KERNEL"); p != "" {
		return p, nil
	}
	for attempt := 0; ; attempt++ {
		out, _ := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
		for line := range strings.Lines(string(out)) {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
				return f[1], nil
			}
		}
		if attempt > 0 || os.Geteuid() != 0 {
			return "", fmt.Errorf("%w: apt-cache does not know linux-image-amd64 (apt-get update as root)", ErrUnavailable)
		}
		if err := aptGet(ctx, "", "update", "-qq"); err != nil {
			return "", fmt.Errorf("%w: apt-get update: %v", ErrUnavailable, err)
		}
	}
}

type kitInfo struct {
	KernelVersion string
	Package       string
	Built         time.Time
}

func loadKit(cache, kver string) (*Kit, error) {
	dir := filepath.Join(cache, kver)
	b, err := os.ReadFile(filepath.Join(dir, kitFile))
	if err != nil {
		return nil, err
	}
	var info kitInfo
	if err := json.Unmarshal(b, &info); err != nil || info.KernelVersion != kver {
		return nil, fmt.Errorf("bad kit record in %s", dir)
	}
	return &Kit{KernelVersion: kver, Dir: dir, cacheDir: cache}, nil
}

// kitRecheck is how long a kit is used before apt is asked for a newer kernel.
const kitRecheck = 24 * time.Hour

// checked is when the kit was last found current (its record's mtime).
func (k *Kit) checked() time.Time {
	fi, err := os.Stat(filepath.Join(k.Dir, kitFile))
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func newestKit(cache string) *Kit {
	entries, _ := os.ReadDir(cache)
	var best *Kit
	var bestTime time.Time
	for _, e := range entries {
		if k, err := loadKit(cache, e.Name()); err == nil && k.checked().After(bestTime) {
			best, bestTime = k, k.checked()
		}
	}
	return best
}

// removeOtherKits deletes kits of other kernel versions (about 450 MB each) and
// leftovers of interrupted builds. The caller holds the lock, so no VM uses them.
func removeOtherKits(cache, keep string) {
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if e.IsDir() && e.Name() != keep {
			os.RemoveAll(filepath.Join(cache, e.Name()))
		}
	}
}

// buildKit downloads the kernel package and builds the kit in a scratch folder,
// renamed into place when complete.
func buildKit(ctx context.Context, cache, pkg, kver string) (*Kit, error) {
	tmp, err := os.MkdirTemp(cache, kver+".build-")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer os.RemoveAll(tmp)

	if err := aptGet(ctx, tmp, "download", "-qq", pkg); err != nil {
		// The lists may predate a kernel update that removed the old package.
		if os.Geteuid() != 0 || aptGet(ctx, "", "update", "-qq") != nil || aptGet(ctx, tmp, "download", "-qq", pkg) != nil {
			return nil, fmt.Errorf("%w: downloading %s: %v", ErrUnavailable, pkg, err)
		}
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("vmtest: apt-get download %s left %d .deb files", pkg, len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("vmtest: extracting %s: %v: %s", debs[0], err, lastLine(string(out)))
	}
	os.Remove(debs[0])
	// Merged-/usr packages put the modules under usr/lib; depmod -b looks in lib.
	if _, err := os.Stat(filepath.Join(root, "lib", "modules", kver)); err != nil {
		if _, err := os.Stat(filepath.Join(root, "usr", "lib", "modules", kver)); err == nil {
			os.Symlink("usr/lib", filepath.Join(root, "lib"))
		}
	}
	if out, err := exec.CommandContext(ctx, "depmod", "-b", root, kver).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("vmtest: depmod: %v: %s", err, lastLine(string(out)))
	}
	vmlinuz := filepath.Join(root, "boot", "vmlinuz-"+kver)
	if err := extractVmlinux(ctx, vmlinuz, filepath.Join(tmp, "vmlinux")); err != nil {
		return nil, err
	}
	os.Remove(vmlinuz)
	if err := writeInitramfs(ctx, root, kver, filepath.Join(tmp, "initramfs.cpio.gz")); err != nil {
		return nil, err
	}
	info, _ := json.Marshal(kitInfo{KernelVersion: kver, Package: pkg, Built: time.Now()})
	if err := os.WriteFile(filepath.Join(tmp, kitFile), info, 0o644); err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, kver)
	os.RemoveAll(dir) // an incomplete kit without kit.json
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return &Kit{KernelVersion: kver, Dir: dir, cacheDir: cache}, nil
}

// extractVmlinux decompresses the kernel inside a bzImage: the xz stream that
// starts somewhere after the setup code. QEMU boots the ELF through its PVH note,
// which saves decompressing it under TCG (2.5 s a boot). Each xz magic is tried
// until one decompresses to an ELF.
func extractVmlinux(ctx context.Context, bzImage, out string) error {
	img, err := os.ReadFile(bzImage)
	if err != nil {
		return fmt.Errorf("vmtest: %v", err)
	}
	magic := []byte{0xFD, '7', 'z', 'X', 'Z', 0}
	for off := 0; ; {
		i := bytes.Index(img[off:], magic)
		if i < 0 {
			return fmt.Errorf("vmtest: no xz-compressed kernel in %s", bzImage)
		}
		off += i
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "xz", "-dc", "--single-stream")
		cmd.Stdin, cmd.Stdout = bytes.NewReader(img[off:]), f
		runErr := cmd.Run()
		f.Close()
		if runErr == nil && isELF(out) {
			return nil
		}
		off++
	}
}

func isELF(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// writeInitramfs writes busybox, init and the boot modules (decompressed; busybox
// insmod may not read .ko.xz) with their load order.
func writeInitramfs(ctx context.Context, root, kver, out string) error {
	mods, err := moduleOrder(ctx, root, kver)
	if err != nil {
		return err
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	c := &cpioWriter{w: zw}
	for _, d := range []string{"bin", "dev", "proc", "sys", "mod", "host", "rw", "newroot"} {
		c.dir(d)
	}
	c.charDev("dev/console", 5, 1) // init's stdio before devtmpfs is mounted
	c.exec("bin/busybox", busybox)
	c.exec("init", initScript)
	var list strings.Builder
	for _, m := range mods {
		b, err := readModule(ctx, m)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(filepath.Base(m), ".xz"), ".zst"), ".gz")
		c.file("mod/"+name, b)
		fmt.Fprintln(&list, name)
	}
	c.file("mod/list", []byte(list.String()))
	if err := c.close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// moduleOrder lists the module files for bootModules, dependencies first, each
// once. Built-in ones (builtin lines) need no file.
func moduleOrder(ctx context.Context, root, kver string) ([]string, error) {
	var order []string
	seen := map[string]bool{}
	for _, m := range bootModules {
		out, err := exec.CommandContext(ctx, "modprobe", "-d", root, "-S", kver, "--show-depends", m).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("vmtest: modprobe --show-depends %s: %v: %s", m, err, lastLine(string(out)))
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && f[0] == "insmod" && !seen[f[1]] {
				seen[f[1]] = true
				order = append(order, f[1])
			}
		}
	}
	if len(order) == 0 {
		return nil, errors.New("vmtest: no modules found for the initramfs")
	}
	return order, nil
}

func readModule(ctx context.Context, path string) ([]byte, error) {
	var tool string
	switch filepath.Ext(path) {
	case ".ko":
		return os.ReadFile(path)
	case ".xz":
		tool = "xz"
	case ".zst":
		tool = "zstd"
	case ".gz":
		tool = "gzip"
	default:
		return nil, fmt.Errorf("vmtest: unknown module file %s", path)
	}
	out, err := exec.CommandContext(ctx, tool, "-dc", path).Output()
	if err != nil {
		return nil, fmt.Errorf("vmtest: decompressing %s with %s: %v", path, tool, err)
	}
	return out, nil
}

// lock takes the machine-wide VM lock (flock on a file in the cache), polling so
// that ctx can end the wait. Test binaries of several packages thus queue their
// VMs instead of running them side by side.
func lock(ctx context.Context, cache string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(cache, "vm.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("vmtest: %v", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("vmtest: locking %s: %v", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("vmtest: waiting for another VM to finish: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// kitSize is the kit's size on disk in bytes, for reports.
func kitSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
