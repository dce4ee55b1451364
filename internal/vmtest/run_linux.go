package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	defaultTimeout  = 2 * time.Minute
	defaultMemoryMB = 512
)

// Run boots the VM, runs opts.Args inside and returns the command's stdout,
// stderr and exit status. It waits for any other VM on this machine to finish
// first (ctx bounds that wait). err is set, and exitCode is -1, when the command
// did not report a status: the watchdog fired (ErrTimeout), QEMU failed, or the
// guest could not start it.
func (k *Kit) Run(ctx context.Context, opts RunOptions) (stdout, stderr []byte, exitCode int, err error) {
	if len(opts.Args) == 0 {
		return nil, nil, -1, errors.New("vmtest: no command")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.MemoryMB <= 0 {
		opts.MemoryMB = defaultMemoryMB
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.Getwd(); err != nil {
			return nil, nil, -1, err
		}
	}
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, nil, -1, err
	}
	if opts.Share != "" {
		// The guest mounts it at its real path: symlinks would point into the overlay.
		if opts.Share, err = filepath.EvalSymlinks(opts.Share); err != nil {
			return nil, nil, -1, fmt.Errorf("vmtest: share: %w", err)
		}
		if opts.Share, err = filepath.Abs(opts.Share); err != nil {
			return nil, nil, -1, err
		}
	}

	runDir, err := os.MkdirTemp("", "vmtest-run-")
	if err != nil {
		return nil, nil, -1, err
	}
	// CTAPKIT_VM_DEBUG=1 keeps the run folder (cmd.sh, console.log, outputs) and
	// lets the kernel log everything to the console.
	debug := os.Getenv("CTAPKIT_VM_DEBUG") == "1"
	if debug {
		fmt.Fprintf(os.Stderr, "vmtest: run folder %s kept (CTAPKIT_VM_DEBUG=1)\n", runDir)
	} else {
		defer os.RemoveAll(runDir)
	}
	if runDir, err = filepath.EvalSymlinks(runDir); err != nil {
		return nil, nil, -1, err
	}
	for _, p := range []string{runDir, opts.Share, k.Dir} {
		if strings.ContainsAny(p, " \t\n") {
			return nil, nil, -1, fmt.Errorf("vmtest: %q: paths on the kernel command line cannot hold spaces", p)
		}
	}
	if err := os.WriteFile(filepath.Join(runDir, "cmd.sh"), commandScript(opts), 0o644); err != nil {
		return nil, nil, -1, err
	}

	unlock, err := lock(ctx, k.cacheDir)
	if err != nil {
		return nil, nil, -1, err
	}
	defer unlock()

	file := func(name string) string { return filepath.Join(runDir, name) }
	cmdline := []string{"console=ttyS0", "quiet", "loglevel=3", "panic=-1", "cryptomgr.notests"}
	if debug {
		cmdline = []string{"console=ttyS0", "ignore_loglevel", "panic=-1", "cryptomgr.notests"}
	}
	cmdline = append(cmdline, "vmtest.run="+runDir, "vmtest.modules="+filepath.Join(k.Dir, "root", "lib", "modules", k.KernelVersion))
	if opts.Share != "" {
		cmdline = append(cmdline, "vmtest.share="+opts.Share)
	}
	args := []string{
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-cpu", "max", "-smp", "1", "-m", strconv.Itoa(opts.MemoryMB) + "M",
		"-kernel", filepath.Join(k.Dir, "vmlinux"),
		"-initrd", filepath.Join(k.Dir, "initramfs.cpio.gz"),
		"-append", strings.Join(cmdline, " "),
		"-serial", "file:" + file("console.log"),
		"-fsdev", "local,id=host,path=/,readonly=on,security_model=none,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev=host,mount_tag=host",
		"-device", "virtio-rng-pci",
		"-device", "virtio-serial-pci",
	}
	args = append(args, accel()...)
	for _, port := range []string{"stdout", "stderr", "status"} {
		args = append(args,
			"-chardev", "file,id="+port+",path="+file(port),
			"-device", "virtserialport,chardev="+port+",name=vm."+port)
	}
	if opts.Share != "" {
		args = append(args,
			"-fsdev", "local,id=share,path="+opts.Share+",security_model=none",
			"-device", "virtio-9p-pci,fsdev=share,mount_tag=share")
	}

	if debug {
		fmt.Fprintf(os.Stderr, "vmtest: qemu-system-x86_64 %s\n", strings.Join(args, " "))
	}
	// The watchdog: CommandContext kills QEMU by PID when runCtx ends.
	runCtx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	qemu := exec.CommandContext(runCtx, "qemu-system-x86_64", args...)
	var qemuOut bytes.Buffer
	qemu.Stdout, qemu.Stderr = &qemuOut, &qemuOut
	// QEMU must not outlive a test binary that is killed.
	qemu.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	qemu.WaitDelay = 5 * time.Second
	qemuErr := qemu.Run()

	console, _ := os.ReadFile(file("console.log"))
	if opts.Console != nil {
		opts.Console.Write(console)
	}
	stdout, _ = os.ReadFile(file("stdout"))
	stderr, _ = os.ReadFile(file("stderr"))
	status, statusErr := os.ReadFile(file("status"))
	code, convErr := strconv.Atoi(strings.TrimSpace(string(status)))
	switch {
	case runCtx.Err() == context.DeadlineExceeded && ctx.Err() == nil:
		return stdout, stderr, -1, fmt.Errorf("%w after %v; console: %s", ErrTimeout, opts.Timeout, tail(console))
	case ctx.Err() != nil:
		return stdout, stderr, -1, ctx.Err()
	case qemuErr != nil:
		return stdout, stderr, -1, fmt.Errorf("vmtest: qemu: %v: %s; console: %s", qemuErr, tail(qemuOut.Bytes()), tail(console))
	case statusErr != nil || convErr != nil:
		return stdout, stderr, -1, fmt.Errorf("vmtest: the guest reported no exit status; console: %s", tail(console))
	}
	return stdout, stderr, code, nil
}

// accel is TCG unless CTAPKIT_VM_ACCEL names another (kvm): a /dev/kvm that
// opens is no proof that KVM runs guests (here, nested, it hangs at once), and
// the timings in the notes are TCG's.
func accel() []string {
	if a := os.Getenv("CTAPKIT_VM_ACCEL"); a != "" {
		return []string{"-accel", a}
	}
	return []string{"-accel", "tcg"}
}

// commandScript is cmd.sh, which the guest runs with sh in the host's root: the
// environment, the working directory and the command, each shell-quoted.
func commandScript(opts RunOptions) []byte {
	var b strings.Builder
	b.WriteString("# written by vmtest for one VM run\n")
	b.WriteString("export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n")
	for _, kv := range opts.Env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || !shellName(name) || name == "PWD" || name == "OLDPWD" || name == "SHLVL" {
			continue
		}
		fmt.Fprintf(&b, "export %s\n", shellQuote(kv))
	}
	fmt.Fprintf(&b, "cd %s || exit 125\n", shellQuote(opts.Dir))
	b.WriteString("exec")
	for _, a := range opts.Args {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString("\n")
	return []byte(b.String())
}

func shellName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tail is the last lines of a log, for error messages.
func tail(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, " | ")
}
