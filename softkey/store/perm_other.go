//go:build !unix

package store

import "io/fs"

// checkPrivate: file ownership and modes are Unix notions; Windows ACLs are left to
// the user profile's defaults.
func checkPrivate(string, fs.FileInfo) error { return nil }
