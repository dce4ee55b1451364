//go:build unix

package store

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// checkPrivate refuses a state file that another user owns or that other users may
// read or write: its keys (or, encrypted, its passphrase's strength) would be theirs
// to take, and a file someone else can write is not ours to trust. Like ssh with its
// private keys, root is no exception.
func checkPrivate(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); int64(st.Uid) != int64(uid) {
		return &stateError{fmt.Sprintf("state file %s belongs to another user (uid %d, you are uid %d); refusing to use it",
			path, st.Uid, uid), []error{ErrUnsafeFile}}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &stateError{fmt.Sprintf("state file %s is open to other users (mode %04o); refusing to use it: run chmod 600 %s",
			path, perm, shellQuote(path)), []error{ErrUnsafeFile}}
	}
	return nil
}
