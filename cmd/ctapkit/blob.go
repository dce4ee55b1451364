package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
)

// maxBlobInput bounds what blob put reads: far above any key's large-blob storage,
// but not unbounded.
const maxBlobInput = 16 << 20

func (a *app) blobCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "blob",
		Short: "Read and write the large blobs stored with credentials",
		Long: `Read and write large blobs (CTAP 2.1 largeBlobs): data a relying party stores on
the key with a discoverable credential, such as a certificate. Each blob is encrypted
under its credential's largeBlobKey, so only a credential made with the largeBlobKey
extension (make-credential --rk --large-blob-key) can have one.

get, put and delete find the credential's key through credential management, so they
need the PIN ($` + envPIN + `, else a masked prompt); --cred takes the credential ID or a
unique prefix of it, as 'ctapkit cred list' shows it. list needs no PIN, but without
the keys it can only count the entries.`,
	}
	c.AddCommand(a.blobListCommand(), a.blobGetCommand(), a.blobPutCommand(), a.blobDeleteCommand())
	return c
}

// requireLargeBlobs fails before any PIN is asked when the key has no large-blob storage.
func requireLargeBlobs(ctx context.Context, s *session) (*ctap2.Info, error) {
	info, err := s.client.Info(ctx)
	if err != nil {
		return nil, err
	}
	if v, _ := info.Option("largeBlobs"); !v {
		return nil, errors.New("this key does not support large blobs (no largeBlobs option in getInfo)")
	}
	return info, nil
}

// blobCredential resolves --cred to a credential with a largeBlobKey, with a token
// that has perms.
func (a *app) blobCredential(ctx context.Context, s *session, perms ctap2.Permission, pf *pinFlag, credArg string) (*credRef, *ctap2.PINToken, error) {
	if _, err := requireLargeBlobs(ctx, s); err != nil {
		return nil, nil, err
	}
	ref, tok, err := a.findCredential(ctx, s, perms, pf, credArg)
	if err != nil {
		return nil, nil, err
	}
	if len(ref.cred.LargeBlobKey) == 0 {
		return nil, nil, withHint(fmt.Errorf("credential %s of %s has no largeBlobKey, so it cannot have a large blob", ref.id(), ref.describe()),
			"only credentials made with the largeBlobKey extension have one (make-credential --rk --large-blob-key)")
	}
	return ref, tok, nil
}

func credFlagValue(v string) (string, error) {
	if v == "" {
		return "", usageErrorf("--cred: give the credential ID or a unique prefix of it")
	}
	return normalizeIDArg("--cred", v)
}

// --- blob list ---

type blobListJSON struct {
	Count   int             `json:"count"`
	Size    int             `json:"size"`    // bytes of the serialized array, trailer included
	MaxSize uint            `json:"maxSize"` // maxSerializedLargeBlobArray
	Entries []blobEntryJSON `json:"entries"`
}

type blobEntryJSON struct {
	Size     int     `json:"size"`     // encoded bytes in the array
	OrigSize *uint64 `json:"origSize"` // uncompressed data; null when not a large-blob map
}

func (a *app) blobListCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Show how many large blobs the key holds and how much room they take",
		Long: `Show the entries of the key's large-blob array: how many there are, their sizes
and how much of the key's storage they use. Which credential an entry belongs to is
known only to whoever holds its key; this needs no PIN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, s, done, err := a.beginSession(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			info, err := requireLargeBlobs(ctx, s)
			if err != nil {
				return err
			}
			serialized, err := s.client.ReadSerializedLargeBlobArray(ctx)
			if err != nil {
				return err
			}
			arr, err := ctap2.ParseLargeBlobArray(serialized)
			if err != nil {
				return fmt.Errorf("reading large blobs: %w", err)
			}
			out := blobListJSON{Count: len(arr), Size: len(serialized), MaxSize: info.MaxSerializedLargeBlobArray, Entries: []blobEntryJSON{}}
			for _, raw := range arr {
				e := blobEntryJSON{Size: len(raw)}
				var entry ctap2.LargeBlobEntry
				if ctap2.Unmarshal(raw, &entry) == nil {
					e.OrigSize = &entry.OrigSize
				}
				out.Entries = append(out.Entries, e)
			}
			if a.json {
				return writeJSON(a.io.Out, out)
			}
			used := fmt.Sprintf("%d bytes", out.Size)
			if out.MaxSize > 0 {
				used += fmt.Sprintf(" of %d", out.MaxSize)
			}
			if err := writeTable(a.io.Out, []row{{"Entries", fmt.Sprint(out.Count)}, {"Storage used", used}}); err != nil {
				return err
			}
			if len(out.Entries) == 0 {
				return nil
			}
			var rows [][]string
			for i, e := range out.Entries {
				data := "not a large-blob entry"
				if e.OrigSize != nil {
					data = fmt.Sprintf("%d bytes", *e.OrigSize)
				}
				rows = append(rows, []string{fmt.Sprint(i + 1), fmt.Sprintf("%d bytes", e.Size), data})
			}
			fmt.Fprintln(a.io.Out)
			return writeColumns(a.io.Out, []string{"ENTRY", "STORED", "DATA"}, rows)
		},
	}
}

// --- blob get ---

func (a *app) blobGetCommand() *cobra.Command {
	var (
		credArg, output string
		pf              pinFlag
	)
	c := &cobra.Command{
		Use:   "get --cred ID-PREFIX [-o FILE]",
		Short: "Read a credential's large blob",
		Long: `Read and decrypt the large blob of a credential. The data goes to stdout, or to
FILE with -o (created with mode 0600). With --json it is printed base64url in
{"credentialId","size","data"} (without "data" when -o is given).`,
		Example: "  ctapkit blob get --cred AgZ3kq1a -o cert.der",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prefix, err := credFlagValue(credArg)
			if err != nil {
				return err
			}
			ctx, s, done, err := a.beginSession(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ref, _, err := a.blobCredential(ctx, s, ctap2.PermCredentialManagement, &pf, prefix)
			if err != nil {
				return err
			}
			data, err := s.client.GetLargeBlob(ctx, ref.cred.LargeBlobKey)
			if errors.Is(err, ctap2.ErrLargeBlobNotFound) {
				return fmt.Errorf("credential %s of %s has no large blob", ref.id(), ref.describe())
			}
			if err != nil {
				return err
			}
			toFile := output != "" && output != "-"
			if toFile {
				if err := os.WriteFile(output, data, 0o600); err != nil {
					return fmt.Errorf("blob get: %w", err)
				}
			}
			if a.json {
				out := map[string]any{"device": s.dev.Info().URI, "credentialId": ref.id(), "size": len(data)}
				if toFile {
					out["file"] = output
				} else {
					out["data"] = b64(data)
				}
				return writeJSON(a.io.Out, out)
			}
			if toFile {
				fmt.Fprintf(a.io.ErrOut, "Wrote %d bytes to %s\n", len(data), output)
				return nil
			}
			_, err = a.io.Out.Write(data)
			return err
		},
	}
	c.Flags().StringVar(&credArg, "cred", "", "credential ID or unique prefix (required)")
	c.Flags().StringVarP(&output, "output", "o", "", "write the data to this file instead of stdout")
	pf.register(c.Flags())
	_ = c.MarkFlagRequired("cred")
	return c
}

// --- blob put ---

func (a *app) blobPutCommand() *cobra.Command {
	var (
		credArg, input string
		pf             pinFlag
	)
	c := &cobra.Command{
		Use:   "put --cred ID-PREFIX [-i FILE]",
		Short: "Store data as a credential's large blob",
		Long: `Store data as the large blob of a credential, replacing the one it had; the other
credentials' blobs stay. The data is read from stdin, or from FILE with -i; it is
compressed and encrypted with the credential's largeBlobKey, and must fit in the key's
large-blob storage ('ctapkit blob list' shows the room).`,
		Example: "  ctapkit blob put --cred AgZ3kq1a -i cert.der\n  echo hello | ctapkit blob put --cred AgZ3kq1a",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prefix, err := credFlagValue(credArg)
			if err != nil {
				return err
			}
			data, err := a.readBlobInput(input)
			if err != nil {
				return err
			}
			ctx, s, done, err := a.beginSession(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ref, tok, err := a.blobCredential(ctx, s, ctap2.PermCredentialManagement|ctap2.PermLargeBlobWrite, &pf, prefix)
			if err != nil {
				return err
			}
			if err := s.client.PutLargeBlob(ctx, tok, ref.cred.LargeBlobKey, data); err != nil {
				return fmt.Errorf("blob put: %w", err)
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"device": s.dev.Info().URI, "credentialId": ref.id(), "size": len(data), "stored": true})
			}
			fmt.Fprintf(a.io.Out, "Stored %d bytes as the large blob of %s\n", len(data), ref.describe())
			return nil
		},
	}
	c.Flags().StringVar(&credArg, "cred", "", "credential ID or unique prefix (required)")
	c.Flags().StringVarP(&input, "input", "i", "", "read the data from this file instead of stdin")
	pf.register(c.Flags())
	_ = c.MarkFlagRequired("cred")
	return c
}

// readBlobInput reads blob put's data from a file or stdin (not a terminal: there
// the user would be typing binary data by accident).
func (a *app) readBlobInput(path string) ([]byte, error) {
	var r io.Reader
	name := "stdin"
	if path == "" || path == "-" {
		if a.io.inTTY {
			return nil, usageErrorf("blob put: pipe the data in or give -i FILE")
		}
		r = a.io.In
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("blob put: %w", err)
		}
		defer f.Close()
		r, name = f, path
	}
	data, err := io.ReadAll(io.LimitReader(r, maxBlobInput+1))
	if err != nil {
		return nil, fmt.Errorf("blob put: reading %s: %w", name, err)
	}
	if len(data) > maxBlobInput {
		return nil, fmt.Errorf("blob put: %s holds more than %d bytes, far more than any key stores", name, maxBlobInput)
	}
	return data, nil
}

// --- blob delete ---

func (a *app) blobDeleteCommand() *cobra.Command {
	var (
		credArg string
		yes     bool
		pf      pinFlag
	)
	c := &cobra.Command{
		Use:   "delete --cred ID-PREFIX",
		Short: "Delete a credential's large blob",
		Long: `Delete the large blob of a credential (the credential itself stays). Asks for
confirmation on a terminal; --yes skips the question, and is needed without a terminal.`,
		Example: "  ctapkit blob delete --cred AgZ3kq1a --yes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			prefix, err := credFlagValue(credArg)
			if err != nil {
				return err
			}
			if !yes && !a.io.CanPrompt() {
				return usageErrorf("deleting a large blob cannot be undone; pass --yes to confirm without a terminal")
			}
			s, err := a.stepSession(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			ref, tok, err := a.blobCredential(ctx, s, ctap2.PermCredentialManagement|ctap2.PermLargeBlobWrite, &pf, prefix)
			if err != nil {
				return err
			}
			// Check there is something to delete before asking.
			if _, err := s.client.GetLargeBlob(ctx, ref.cred.LargeBlobKey); errors.Is(err, ctap2.ErrLargeBlobNotFound) {
				return fmt.Errorf("credential %s of %s has no large blob", ref.id(), ref.describe())
			} else if err != nil {
				return err
			}
			if err := a.confirm(yes, "Delete the large blob of "+ref.describe()+"; this cannot be undone"); err != nil {
				return fmt.Errorf("blob delete: %w", err)
			}
			ctx, cancel = a.withTimeout(cmd.Context())
			defer cancel()
			if err := s.client.DeleteLargeBlob(ctx, tok, ref.cred.LargeBlobKey); err != nil {
				return fmt.Errorf("blob delete: %w", err)
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"device": s.dev.Info().URI, "credentialId": ref.id(), "deleted": true})
			}
			fmt.Fprintf(a.io.Out, "Deleted the large blob of %s\n", ref.describe())
			return nil
		},
	}
	c.Flags().StringVar(&credArg, "cred", "", "credential ID or unique prefix (required)")
	c.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	pf.register(c.Flags())
	_ = c.MarkFlagRequired("cred")
	return c
}
