package pcsctest

import "syscall"

// daemonProcAttr puts pcscd in its own process group and has the kernel stop it
// when the test binary dies, so that no daemon outlives a crashed test.
func daemonProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
