package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
	"github.com/ctapkit/ctapkit/softkey"
	"github.com/ctapkit/ctapkit/softkey/store"
)

func (a *app) softkeyCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "softkey",
		Short: "Create, inspect, back up and serve the software authenticator",
		Long: `The softkey is ctapkit's software FIDO2 authenticator. Its state (keys, resident
credentials, counters) lives in one file; use it with -d soft:PATH.

The state file is encrypted at rest with a passphrase unless it was created with
--no-passphrase. The passphrase comes from --passphrase-file, ` + envPassphrase + `,
or a prompt on the terminal; -d soft:PATH and softkey serve read the variable or ask.

A state file that cannot be used is left untouched and named in a one-line error:
a wrong passphrase exits 1 (with a hint), a missing one without a terminal 2; a
damaged or truncated file, one of a newer format, one owned by another user or open
to others (the fix is chmod 600) exit 1; a missing file exits 3.`,
	}
	c.AddCommand(a.softkeyInitCommand(), a.softkeyInfoCommand(), a.softkeyServeCommand(),
		a.softkeyPassphraseCommand(), a.softkeyExportCommand(), a.softkeyImportCommand())
	return c
}

// defaultStatePath is $XDG_DATA_HOME/ctapkit/softkey.db (~/.local/share by default).
func defaultStatePath() string {
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "softkey.db"
		}
		dir = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dir, "ctapkit", "softkey.db")
}

func (a *app) softkeyInitCommand() *cobra.Command {
	var state, passFile, attestation string
	var noPassphrase bool
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a new softkey state file",
		Long: `Create a new softkey state file (mode 0600), encrypted at rest: a passphrase from
--passphrase-file, ` + envPassphrase + ` or a prompt (asked twice) protects its keys,
relying parties and users. --no-passphrase stores it unencrypted, for throwaway keys
in CI.

--attestation chooses what make-credential attests with: self (the default: packed
self attestation, signed by the new credential's key), none, or batch: init makes a
local attestation CA and a P-256 batch key whose certificate carries the AAGUID
(id-fido-gen-ce-aaguid), kept in the state file like every other key. softkey info
prints the CA certificate for relying parties that verify attestation. A batch key
also answers enterprise attestation, once config enterprise-attestation enables it.`,
		Example: "  ctapkit softkey init --state ./sk.db\n" +
			"  ctapkit softkey init --state ./ci.db --no-passphrase\n" +
			"  ctapkit softkey init --state ./batch.db --attestation batch\n  ctapkit -d soft:./sk.db info",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			opts := store.CreateOptions{NoPassphrase: noPassphrase, Attestation: attestation}
			switch softkey.AttestationMode(attestation) {
			case softkey.AttestationSelf, softkey.AttestationNone, softkey.AttestationBatch:
			default:
				return usageErrorf("--attestation: want self, batch or none, got %q", attestation)
			}
			if _, err := os.Lstat(state); err == nil {
				return fmt.Errorf("%s: file already exists; not overwriting it", state)
			}
			var batch *softkey.BatchAttestation
			if attestation == string(softkey.AttestationBatch) {
				var err error
				if batch, err = newBatchKey(&opts); err != nil {
					return fmt.Errorf("softkey init: %w", err)
				}
			}
			pass, err := newStatePassphrase(a.io, state, passFile, noPassphrase)
			if err != nil {
				return err
			}
			defer clear(pass)
			opts.Passphrase = pass
			db, err := store.Create(state, opts)
			if err != nil {
				return fmt.Errorf("softkey init: %w", err)
			}
			meta := db.Meta()
			enc := encryptionText(db)
			if err := db.Close(); err != nil {
				return fmt.Errorf("softkey init: %w", err)
			}
			if a.json {
				out := map[string]any{"state": state, "aaguid": uuid(meta.AAGUID[:]),
					"encrypted": !noPassphrase, "formatVersion": meta.FormatVersion, "attestation": attestation}
				if batch != nil {
					out["attestationCA"] = string(batch.CAPEM)
				}
				return writeJSON(a.io.Out, out)
			}
			what := "unencrypted"
			if !noPassphrase {
				what = "encrypted: " + enc
			}
			if attestation != string(softkey.AttestationSelf) { // the default goes without saying
				what += ", " + attestation + " attestation"
			}
			fmt.Fprintf(a.io.Out, "created softkey %s (AAGUID %s, %s)\n", state, uuid(meta.AAGUID[:]), what)
			if batch != nil {
				fmt.Fprintf(a.io.Out, "its attestation CA is shown by: ctapkit softkey info --state %s\n", state)
			}
			fmt.Fprintf(a.io.Out, "use it with: ctapkit -d soft:%s info\n", state)
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file to create")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from `FILE` (one trailing newline is dropped)")
	c.Flags().BoolVar(&noPassphrase, "no-passphrase", false, "store the state unencrypted")
	c.Flags().StringVar(&attestation, "attestation", string(softkey.AttestationSelf),
		"attestation `MODE`: self, batch (a local CA and batch certificate) or none")
	return c
}

// newBatchKey makes a batch attestation key and certificate for a new state and
// puts them in opts. The certificate names the AAGUID, so the AAGUID is chosen here
// rather than by store.Create.
func newBatchKey(opts *store.CreateOptions) (*softkey.BatchAttestation, error) {
	m, err := store.NewMeta(nil, nil)
	if err != nil {
		return nil, err
	}
	batch, err := softkey.NewBatchAttestation(m.AAGUID)
	if err != nil {
		return nil, err
	}
	key, err := x509.MarshalPKCS8PrivateKey(batch.Key)
	if err != nil {
		return nil, err
	}
	opts.AAGUID, opts.AttestationKey, opts.AttestationCerts = &m.AAGUID, key, batch.Certs
	return batch, nil
}

// encryptionText is the Encryption line of softkey info.
func encryptionText(db *store.DB) string {
	e, ok := db.Encryption()
	if !ok {
		return "none (created with --no-passphrase)"
	}
	return fmt.Sprintf("%s, passphrase (%s)", e.Cipher, e.KDF)
}

func (a *app) softkeyInfoCommand() *cobra.Command {
	var state, passFile string
	c := &cobra.Command{
		Use:   "info",
		Short: "Describe a softkey state file",
		Long: `Describe a softkey state file: identity, passkeys, attestation (with the CA
certificate of a batch key), PIN and options, encryption and format version. Every
record is read and authenticated, so a damaged file shows here.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			db, err := openStateFile(a.io, state, passFile)
			if err != nil {
				return err
			}
			defer db.Close()
			return a.writeSoftkeyInfo(state, db)
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the passphrase from `FILE`")
	return c
}

func (a *app) writeSoftkeyInfo(state string, db *store.DB) error {
	if err := db.Check(); err != nil {
		return err
	}
	meta := db.Meta()
	n, err := db.CountCredentials()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	rps, err := db.RelyingParties()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	s, err := db.Settings()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	blob, err := db.LargeBlobArray()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	counter, err := db.CounterCeiling()
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	batch, err := storedBatchCerts(db)
	if err != nil {
		return fmt.Errorf("softkey info: %w", err)
	}
	minPIN := max(s.MinPINLength, ctap2.DefaultMinPINLength)
	enc, encrypted := db.Encryption()
	if a.json {
		var encJSON any
		if encrypted {
			encJSON = map[string]any{"cipher": enc.Cipher, "kdf": "argon2id", "time": enc.KDF.Time,
				"memoryKiB": enc.KDF.MemoryKiB, "threads": enc.KDF.Threads}
		}
		out := map[string]any{
			"state": state, "aaguid": uuid(meta.AAGUID[:]), "formatVersion": meta.FormatVersion,
			"created": meta.Created, "residentCredentials": n, "relyingParties": len(rps),
			"encrypted": encrypted, "encryption": encJSON,
			"attestation": attestationName(meta.Attestation), "counterCeiling": counter,
			"largeBlobBytes": len(blob),
			"options": map[string]any{
				"clientPin": len(s.PINHash) > 0, "pinRetries": s.PINRetries, "uvRetries": s.UVRetries,
				"forcePinChange": s.ForcePINChange, "alwaysUv": s.AlwaysUV, "minPinLength": minPIN,
				"ep": s.EnterpriseAttestation,
			},
		}
		if batch != nil {
			out["attestationCA"] = batch.caPEM
			out["attestationCertificate"] = map[string]any{"subject": batch.leaf.Subject.String(),
				"notBefore": batch.leaf.NotBefore.UTC(), "notAfter": batch.leaf.NotAfter.UTC()}
		}
		return writeJSON(a.io.Out, out)
	}
	pin := "not set"
	if len(s.PINHash) > 0 {
		pin = fmt.Sprintf("set (%d retries left)", s.PINRetries)
		if s.ForcePINChange {
			pin += ", must be changed"
		}
	}
	rows := []row{
		{"State", state},
		{"Format version", fmt.Sprint(meta.FormatVersion)},
		{"Encryption", encryptionText(db)},
		{"AAGUID", uuid(meta.AAGUID[:])},
		{"Created", meta.Created.Format("2006-01-02 15:04:05 MST")},
		{"Passkeys", fmt.Sprint(n)},
		{"Relying parties", fmt.Sprint(len(rps))},
		{"Attestation", attestationName(meta.Attestation)},
	}
	if batch != nil {
		const day = "2006-01-02 15:04:05 MST"
		rows = append(rows, row{"Batch certificate", batch.leaf.Subject.String()},
			row{"Valid", batch.leaf.NotBefore.UTC().Format(day) + " to " + batch.leaf.NotAfter.UTC().Format(day)})
	}
	rows = append(rows, []row{
		{"PIN", pin},
		{"Always UV", onOff(s.AlwaysUV)},
		{"Min PIN length", fmt.Sprint(minPIN)},
		{"Enterprise attestation", onOff(s.EnterpriseAttestation)},
		{"Large blobs", fmt.Sprintf("%d bytes", len(blob))},
		{"Signature counter", fmt.Sprintf("at most %d", counter)},
	}...)
	if err := writeTable(a.io.Out, rows); err != nil {
		return err
	}
	if batch != nil {
		_, err = fmt.Fprintf(a.io.Out, "\nAttestation CA (give it to relying parties that verify attestation):\n%s", batch.caPEM)
	}
	return err
}

// batchCerts are the certificates of a state's batch attestation key.
type batchCerts struct {
	leaf  *x509.Certificate
	caPEM string // the last certificate of the chain: the trust anchor
}

// storedBatchCerts reads the batch attestation certificates of a state; nil when
// it has no batch key.
func storedBatchCerts(db store.AttestationStore) (*batchCerts, error) {
	_, certs, err := db.AttestationKey()
	if err != nil || certs == nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(certs[0])
	if err != nil {
		return nil, fmt.Errorf("batch attestation certificate: %w", err)
	}
	ca := certs[len(certs)-1]
	return &batchCerts{leaf: leaf, caPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca}))}, nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// attestationName is the attestation mode recorded in a state file; older files and
// the default leave it empty, which means self attestation.
func attestationName(mode string) string {
	if mode == "" {
		return string(softkey.AttestationSelf)
	}
	return mode
}

func (a *app) softkeyPassphraseCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "passphrase",
		Short: "Encrypt a softkey state file or change its passphrase",
	}
	c.AddCommand(a.softkeyPassphraseSetCommand(), a.softkeyPassphraseChangeCommand())
	return c
}

// errAlreadyEncrypted stops passphrase set from asking for the passphrase of a file
// that has one.
var errAlreadyEncrypted = errors.New("already encrypted")

func (a *app) softkeyPassphraseSetCommand() *cobra.Command {
	var state, passFile string
	c := &cobra.Command{
		Use:   "set",
		Short: "Encrypt an unencrypted state file with a passphrase",
		Long: `Encrypt a state file made with --no-passphrase, in place: the encrypted file is built
beside it, synced, and renamed over it, so the path always holds a complete state.
Passkeys, counter, PIN, settings and large blobs are kept. The new passphrase comes
from --passphrase-file, ` + envPassphrase + ` or a prompt (asked twice).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			db, err := store.OpenWith(state, store.OpenOptions{Passphrase: func() ([]byte, error) {
				return nil, errAlreadyEncrypted
			}})
			if errors.Is(err, errAlreadyEncrypted) {
				return withHint(fmt.Errorf("%s is encrypted already", state),
					"change its passphrase with: ctapkit softkey passphrase change --state "+state)
			}
			if err != nil {
				return softkeyOpenError(state, err)
			}
			defer db.Close()
			pass, err := newPassphraseFor(a.io, state, passFile, false, false)
			if err != nil {
				return err
			}
			defer clear(pass)
			if err := db.Encrypt(pass, nil); err != nil {
				return err
			}
			n, err := db.CountCredentials()
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"state": state, "encrypted": true,
					"formatVersion": db.Meta().FormatVersion, "residentCredentials": n})
			}
			fmt.Fprintf(a.io.Out, "encrypted %s (%s); %d %s kept\n", state, encryptionText(db), n, plural(n, "passkey"))
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the new passphrase from `FILE`")
	return c
}

func (a *app) softkeyPassphraseChangeCommand() *cobra.Command {
	var state, passFile, newFile string
	c := &cobra.Command{
		Use:   "change",
		Short: "Change the passphrase of an encrypted state file",
		Long: `Change the passphrase of an encrypted state file. Only the wrapped master key is
rewritten, in one transaction: the file has the old passphrase or the new one, never
neither. The current passphrase comes from --passphrase-file, ` + envPassphrase + ` or
a prompt; the new one from --new-passphrase-file, ` + envNewPassphrase + ` or a prompt
(asked twice).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			db, err := openStateFile(a.io, state, passFile)
			if err != nil {
				return err
			}
			defer db.Close()
			if !db.Encrypted() {
				return withHint(fmt.Errorf("%s is not encrypted", state),
					"encrypt it with: ctapkit softkey passphrase set --state "+state)
			}
			src := &passphraseSource{file: newFile, flag: "new-passphrase-file", env: envNewPassphrase,
				label: "New passphrase for " + state}
			if !src.fixed() && !a.io.CanPrompt() {
				return src.needed("a new passphrase")
			}
			pass, err := src.getNew(a.io)
			if err != nil {
				return err
			}
			defer clear(pass)
			if err := db.ChangePassphrase(pass, nil); err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"state": state, "changed": true})
			}
			fmt.Fprintf(a.io.Out, "changed the passphrase of %s (%s)\n", state, encryptionText(db))
			return nil
		},
	}
	c.Flags().StringVar(&state, "state", defaultStatePath(), "state file")
	c.Flags().StringVar(&passFile, "passphrase-file", "", "read the current passphrase from `FILE`")
	c.Flags().StringVar(&newFile, "new-passphrase-file", "", "read the new passphrase from `FILE`")
	return c
}
