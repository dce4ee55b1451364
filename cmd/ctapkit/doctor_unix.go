//go:build unix

package main

import "golang.org/x/sys/unix"

func canReadWrite(path string) error { return unix.Access(path, unix.R_OK|unix.W_OK) }

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
