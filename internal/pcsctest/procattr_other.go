//go:build !linux

package pcsctest

import "syscall"

// daemonProcAttr: a private pcscd needs Linux (unshare); Start fails before
// this matters elsewhere.
func daemonProcAttr() *syscall.SysProcAttr { return nil }
