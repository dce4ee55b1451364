package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/manifoldco/promptui"
	"github.com/spf13/cobra"

	"github.com/ctapkit/ctapkit/ctap2"
)

// Credential IDs in human output are the shortest prefix (base64url) that tells them
// apart from every other listed ID, but never shorter than this.
const minIDPrefix = 8

func (a *app) credCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "cred",
		Short: "List, delete and update the discoverable credentials (passkeys) on a key",
		Long: `Manage the discoverable (resident) credentials stored on a key (CTAP2
credentialManagement). Every command needs the PIN: $` + envPIN + `, else a masked prompt.

Credential IDs are base64url. Human output shows each as the shortest prefix that
is unique among the key's credentials (at least 8 characters); --json shows them whole.
Commands that take an ID accept the whole ID or any prefix that matches exactly one
credential. Non-discoverable credentials are not stored on the key and never listed.`,
	}
	c.AddCommand(a.credListCommand(), a.credDeleteCommand(), a.credUpdateUserCommand())
	return c
}

// rpCredentials is one relying party and its discoverable credentials.
type rpCredentials struct {
	rp    ctap2.RP
	creds []ctap2.ResidentCredential
}

// credRef is one credential found by its ID or a prefix of it.
type credRef struct {
	rp   ctap2.RP
	cred ctap2.ResidentCredential
}

func (r *credRef) id() string { return b64(r.cred.ID.ID) }

// describe names a credential for humans: "alice at example.com".
func (r *credRef) describe() string {
	user := r.cred.User.Name
	if user == "" {
		user = r.cred.User.DisplayName
	}
	if user == "" {
		user = "user " + b64(r.cred.User.ID)
	}
	return fmt.Sprintf("%s at %s", printable(user), printable(rpLabel(r.rp)))
}

// rpLabel is the RP ID, or its hash when a key did not send the ID.
func rpLabel(rp ctap2.RP) string {
	if rp.ID != "" {
		return rp.ID
	}
	return "rpIdHash " + b64(rp.RPIDHash)
}

// requireCredMgmt fails before any PIN is asked when the key cannot manage credentials.
func requireCredMgmt(ctx context.Context, s *session) (*ctap2.Info, error) {
	info, err := s.client.Info(ctx)
	if err != nil {
		return nil, err
	}
	cm, _ := info.Option("credMgmt")
	pre, _ := info.Option("credentialMgmtPreview")
	if !cm && !pre {
		return nil, errors.New("this key does not support credential management (no credMgmt option in getInfo)")
	}
	return info, nil
}

// listCredentials enumerates the discoverable credentials: of every RP, or with rpID
// of that one only (the token may then be bound to rpID). RPs without credentials
// are left out. RPs are sorted by ID, their credentials by user name.
func listCredentials(ctx context.Context, s *session, tok *ctap2.PINToken, rpID string) ([]rpCredentials, error) {
	var rps []ctap2.RP
	if rpID != "" {
		h := sha256.Sum256([]byte(rpID))
		rps = []ctap2.RP{{RPEntity: ctap2.RPEntity{ID: rpID}, RPIDHash: h[:]}}
	} else {
		var err error
		if rps, err = s.client.EnumerateRPs(ctx, tok); err != nil {
			return nil, fmt.Errorf("listing relying parties: %w", err)
		}
	}
	var out []rpCredentials
	for _, rp := range rps {
		creds, err := s.client.EnumerateCredentials(ctx, tok, rp.RPIDHash)
		if err != nil {
			return nil, fmt.Errorf("listing the credentials of %s: %w", printable(rpLabel(rp)), err)
		}
		if len(creds) > 0 {
			// Stable output: by user name, then ID.
			slices.SortStableFunc(creds, func(x, y ctap2.ResidentCredential) int {
				if c := strings.Compare(x.User.Name, y.User.Name); c != 0 {
					return c
				}
				return bytes.Compare(x.ID.ID, y.ID.ID)
			})
			out = append(out, rpCredentials{rp: rp, creds: creds})
		}
	}
	slices.SortStableFunc(out, func(x, y rpCredentials) int { return strings.Compare(rpLabel(x.rp), rpLabel(y.rp)) })
	return out, nil
}

// allIDs lists every credential ID (base64url) of a listing.
func allIDs(list []rpCredentials) []string {
	var ids []string
	for _, r := range list {
		for _, c := range r.creds {
			ids = append(ids, b64(c.ID.ID))
		}
	}
	return ids
}

// shortIDs maps each ID to its shortest prefix of at least minLen characters that no
// other ID shares (the whole ID when it is a prefix of another or repeated).
func shortIDs(ids []string, minLen int) map[string]string {
	sorted := slices.Clone(ids)
	sort.Strings(sorted)
	common := func(x, y string) int {
		n := 0
		for n < len(x) && n < len(y) && x[n] == y[n] {
			n++
		}
		return n
	}
	out := make(map[string]string, len(sorted))
	for i, id := range sorted {
		// In sorted order the longest common prefix with any other ID is the longer of
		// those with the two neighbours.
		need := 0
		if i > 0 {
			need = max(need, common(id, sorted[i-1])+1)
		}
		if i+1 < len(sorted) {
			need = max(need, common(id, sorted[i+1])+1)
		}
		n := min(max(need, minLen), len(id))
		if prev, ok := out[id]; ok && len(prev) > n {
			n = len(prev)
		}
		out[id] = id[:n]
	}
	return out
}

// normalizeIDArg accepts a base64url credential ID or prefix as typed (standard
// base64 characters and padding are tolerated) and returns it in base64url without
// padding, or a usage error.
func normalizeIDArg(what, arg string) (string, error) {
	s := strings.TrimRight(strings.TrimSpace(arg), "=")
	s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	if s == "" {
		return "", usageErrorf("%s: give a credential ID or a prefix of one (base64url)", what)
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return "", usageErrorf("%s: %q is not base64url (credential IDs are shown by 'ctapkit cred list')", what, printable(arg))
		}
	}
	return s, nil
}

// resolveCredential finds the one credential whose ID is prefix or starts with it. A
// whole ID wins over longer IDs it is a prefix of. No match is an error (exit 1);
// several are a usage error (exit 2) that lists them.
func resolveCredential(list []rpCredentials, prefix string) (*credRef, error) {
	var matches []credRef
	for _, r := range list {
		for _, c := range r.creds {
			id := b64(c.ID.ID)
			if id == prefix {
				return &credRef{rp: r.rp, cred: c}, nil
			}
			if strings.HasPrefix(id, prefix) {
				matches = append(matches, credRef{rp: r.rp, cred: c})
			}
		}
	}
	switch len(matches) {
	case 0:
		return nil, withHint(fmt.Errorf("no credential matches %s", prefix),
			"'ctapkit cred list' shows the discoverable credentials; non-discoverable ones are not stored on the key")
	case 1:
		return &matches[0], nil
	}
	short := shortIDs(allIDs(list), minIDPrefix)
	var names []string
	for _, m := range matches {
		names = append(names, short[m.id()]+" ("+m.describe()+")")
	}
	return nil, withHint(usageErrorf("%s matches %d credentials: %s", prefix, len(matches), strings.Join(names, ", ")),
		"give more characters of the credential ID")
}

// findCredential gets a token with perms (cm and, for large blobs, lbw), lists the
// credentials and resolves prefix among them.
func (a *app) findCredential(ctx context.Context, s *session, perms ctap2.Permission, pf *pinFlag, prefix string) (*credRef, *ctap2.PINToken, error) {
	if _, err := requireCredMgmt(ctx, s); err != nil {
		return nil, nil, err
	}
	tok, err := a.requireToken(ctx, s, perms, "", pf)
	if err != nil {
		return nil, nil, err
	}
	list, err := listCredentials(ctx, s, tok, "")
	if err != nil {
		return nil, nil, err
	}
	ref, err := resolveCredential(list, prefix)
	return ref, tok, err
}

// confirm asks a yes/no question on the terminal unless yes (--yes). Commands check
// for a terminal up front (before any PIN is asked), so that without one and without
// --yes nothing happens; confirm checks again in case one did not.
func (a *app) confirm(yes bool, label string) error {
	if yes {
		return nil
	}
	if !a.io.CanPrompt() {
		return usageErrorf("pass --yes to confirm without a terminal")
	}
	p := promptui.Prompt{Label: label, IsConfirm: true, Stdin: readCloser{a.io.In}, Stdout: writeCloser{a.io.ErrOut}}
	if _, err := p.Run(); err != nil {
		if errors.Is(err, promptui.ErrAbort) {
			return errors.New("not confirmed, nothing changed")
		}
		if errors.Is(err, promptui.ErrInterrupt) || errors.Is(err, promptui.ErrEOF) {
			return fmt.Errorf("not confirmed, nothing changed: %w", errCancelled)
		}
		return err
	}
	return nil
}

// stepSession opens the device for a command that may ask the user a question
// between device steps: every step gets its own --timeout (a.withTimeout) instead
// of one deadline for the whole command.
func (a *app) stepSession(parent context.Context) (*session, error) {
	ctx, cancel := a.withTimeout(parent)
	defer cancel()
	return a.openSession(ctx)
}

// --- cred list ---

type credListJSON struct {
	RPs       []credRPJSON `json:"rps"`
	Existing  *uint        `json:"existing,omitempty"`
	Remaining *uint        `json:"remaining,omitempty"`
}

type credRPJSON struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	RPIDHash    string          `json:"rpIdHash"`
	Credentials []credEntryJSON `json:"credentials"`
}

type credEntryJSON struct {
	CredentialID  string   `json:"credentialId"`
	User          userJSON `json:"user"`
	PublicKeyCose string   `json:"publicKeyCose"`
	CredProtect   *uint    `json:"credProtect"` // null when the key did not say
	LargeBlobKey  string   `json:"largeBlobKey,omitempty"`
}

func newCredEntryJSON(c ctap2.ResidentCredential) credEntryJSON {
	e := credEntryJSON{
		CredentialID:  b64(c.ID.ID),
		User:          userJSON{ID: b64(c.User.ID), Name: c.User.Name, DisplayName: c.User.DisplayName},
		PublicKeyCose: b64(c.PublicKey),
	}
	if c.CredProtect != 0 {
		p := c.CredProtect
		e.CredProtect = &p
	}
	if len(c.LargeBlobKey) > 0 {
		e.LargeBlobKey = b64(c.LargeBlobKey)
	}
	return e
}

func (a *app) credListCommand() *cobra.Command {
	var (
		rpID string
		pf   pinFlag
	)
	c := &cobra.Command{
		Use:   "list [--rp ID]",
		Short: "List the discoverable credentials, by relying party",
		Long: `List the discoverable credentials on the key: relying party, user, credential ID
(shortest unique prefix; whole with --json) and credProtect level, and how many more
fit on the key.

With --rp only that relying party's credentials are listed, with a PIN token bound to
it (the counts of the whole key are then not shown).`,
		Example: "  ctapkit cred list\n  CTAPKIT_PIN=123456 ctapkit -d soft:./sk.db cred list --rp example.com --json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("rp") && rpID == "" {
				return usageErrorf("--rp must not be empty")
			}
			ctx, s, done, err := a.beginSession(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if _, err := requireCredMgmt(ctx, s); err != nil {
				return err
			}
			tok, err := a.requireToken(ctx, s, ctap2.PermCredentialManagement, rpID, &pf)
			if err != nil {
				return err
			}
			var out credListJSON
			if rpID == "" {
				// getCredsMetadata refuses a token bound to an RP.
				md, err := s.client.CredsMetadata(ctx, tok)
				if err != nil {
					return err
				}
				out.Existing, out.Remaining = &md.Existing, &md.MaxRemaining
			}
			list, err := listCredentials(ctx, s, tok, rpID)
			if err != nil {
				return err
			}
			out.RPs = []credRPJSON{}
			for _, r := range list {
				rj := credRPJSON{ID: r.rp.ID, Name: r.rp.Name, RPIDHash: b64(r.rp.RPIDHash), Credentials: []credEntryJSON{}}
				for _, c := range r.creds {
					rj.Credentials = append(rj.Credentials, newCredEntryJSON(c))
				}
				out.RPs = append(out.RPs, rj)
			}
			if a.json {
				return writeJSON(a.io.Out, out)
			}
			return writeCredList(a.io.Out, list, &out, rpID)
		},
	}
	c.Flags().StringVar(&rpID, "rp", "", "list only this relying party's credentials (token bound to it)")
	pf.register(c.Flags())
	return c
}

func writeCredList(w io.Writer, list []rpCredentials, out *credListJSON, rpID string) error {
	short := shortIDs(allIDs(list), minIDPrefix)
	var rows [][]string
	n := 0
	for _, r := range list {
		for _, c := range r.creds {
			protect := "-"
			if c.CredProtect != 0 {
				protect = fmt.Sprint(c.CredProtect)
			}
			blob := "no"
			if len(c.LargeBlobKey) > 0 {
				blob = "yes"
			}
			rows = append(rows, []string{rpLabel(r.rp), c.User.Name, c.User.DisplayName, short[b64(c.ID.ID)], protect, blob})
			n++
		}
	}
	if n == 0 {
		if rpID != "" {
			fmt.Fprintf(w, "No discoverable credentials for %s\n", printable(rpID))
		} else {
			fmt.Fprintln(w, "No discoverable credentials")
		}
	} else if err := writeColumns(w, []string{"RP", "USER", "DISPLAY NAME", "CREDENTIAL ID", "CREDPROTECT", "BLOB KEY"}, rows); err != nil {
		return err
	}
	if out.Existing != nil && out.Remaining != nil {
		_, err := fmt.Fprintf(w, "%d discoverable %s, room for %d more\n", *out.Existing, plural(int(*out.Existing), "credential"), *out.Remaining)
		return err
	}
	return nil
}

// writeColumns prints a table with a header row; cells are made printable and the
// last column's trailing blanks are dropped.
func writeColumns(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.DiscardEmptyColumns)
	line := func(cells []string) {
		clean := make([]string, len(cells))
		for i, c := range cells {
			clean[i] = printable(c)
		}
		fmt.Fprintln(tw, strings.TrimRight(strings.Join(clean, "\t"), "\t"))
	}
	line(header)
	for _, r := range rows {
		line(r)
	}
	return tw.Flush()
}

// printable replaces control characters (tabs, newlines, terminal escapes) in text
// that came from the key, so it can neither break a table nor drive the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '?'
		}
		return r
	}, s)
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// --- cred delete ---

func (a *app) credDeleteCommand() *cobra.Command {
	var (
		yes bool
		pf  pinFlag
	)
	c := &cobra.Command{
		Use:   "delete ID-PREFIX",
		Short: "Delete a discoverable credential",
		Long: `Delete one discoverable credential, named by its ID (base64url) or a prefix that
matches only it. The relying party can no longer sign in with it; this cannot be undone.
If the credential has a large blob, the blob is deleted too.

Asks for confirmation on a terminal; --yes skips the question, and is needed without
a terminal. A prefix matching several credentials is a usage error (exit 2) that
lists them; one matching none is an error (exit 1).`,
		Example: "  ctapkit cred delete AgZ3kq1a\n  CTAPKIT_PIN=123456 ctapkit cred delete AgZ3kq1a --yes",
		Args:    exactArgs(1, "give the credential ID or a unique prefix of it"),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix, err := normalizeIDArg("cred delete", args[0])
			if err != nil {
				return err
			}
			if !yes && !a.io.CanPrompt() {
				return usageErrorf("deleting a credential cannot be undone; pass --yes to confirm without a terminal")
			}
			s, err := a.stepSession(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := a.withTimeout(cmd.Context())
			defer cancel()
			info, err := s.client.Info(ctx)
			if err != nil {
				return err
			}
			perms := ctap2.PermCredentialManagement
			largeBlobs, _ := info.Option("largeBlobs")
			if largeBlobs {
				perms |= ctap2.PermLargeBlobWrite
			}
			ref, tok, err := a.findCredential(ctx, s, perms, &pf, prefix)
			if err != nil {
				return err
			}
			if err := a.confirm(yes, "Delete credential "+ref.id()+" of "+ref.describe()+"; this cannot be undone"); err != nil {
				return fmt.Errorf("cred delete: %w", err)
			}
			ctx, cancel = a.withTimeout(cmd.Context())
			defer cancel()
			if err := s.client.DeleteCredential(ctx, tok, ref.cred.ID.ID); err != nil {
				return fmt.Errorf("cred delete: %w", err)
			}
			blobDeleted := false
			if largeBlobs && len(ref.cred.LargeBlobKey) > 0 {
				switch err := s.client.DeleteLargeBlob(ctx, tok, ref.cred.LargeBlobKey); {
				case err == nil:
					blobDeleted = true
				case !errors.Is(err, ctap2.ErrLargeBlobNotFound):
					fmt.Fprintf(a.io.ErrOut, "warning: the credential is deleted but its large blob could not be: %s\n", oneLine(err))
				}
			}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{
					"device": s.dev.Info().URI, "deleted": true, "credentialId": ref.id(), "rpId": ref.rp.ID,
					"user":             userJSON{ID: b64(ref.cred.User.ID), Name: ref.cred.User.Name, DisplayName: ref.cred.User.DisplayName},
					"largeBlobDeleted": blobDeleted,
				})
			}
			fmt.Fprintf(a.io.Out, "Deleted credential %s of %s\n", ref.id(), ref.describe())
			if blobDeleted {
				fmt.Fprintln(a.io.Out, "Deleted its large blob")
			}
			return nil
		},
	}
	c.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	pf.register(c.Flags())
	return c
}

// oneLine is an error's text for a warning line.
func oneLine(err error) string {
	line, _ := errorMessage(err)
	return line
}

// exactArgs is cobra.ExactArgs with a message that says what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s (got %d %s)", what, len(args), plural(len(args), "argument"))
		}
		return nil
	}
}

// --- cred update-user ---

func (a *app) credUpdateUserCommand() *cobra.Command {
	var (
		name, displayName string
		pf                pinFlag
	)
	c := &cobra.Command{
		Use:   "update-user ID-PREFIX [--name NAME] [--display-name NAME]",
		Short: "Change the user name or display name stored with a credential",
		Long: `Change the user name and/or display name stored with a discoverable credential
(updateUserInformation). The user ID stays; a name not given keeps its value, and an
empty one (--name "") removes it.`,
		Example: "  ctapkit cred update-user AgZ3kq1a --display-name 'Alice Liddell'",
		Args:    exactArgs(1, "give the credential ID or a unique prefix of it"),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix, err := normalizeIDArg("cred update-user", args[0])
			if err != nil {
				return err
			}
			f := cmd.Flags()
			if !f.Changed("name") && !f.Changed("display-name") {
				return usageErrorf("give --name, --display-name or both")
			}
			for flag, v := range map[string]string{"--name": name, "--display-name": displayName} {
				if len(v) > 64 {
					return usageErrorf("%s: at most 64 bytes, this one has %d", flag, len(v))
				}
			}
			ctx, s, done, err := a.beginSession(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ref, tok, err := a.findCredential(ctx, s, ctap2.PermCredentialManagement, &pf, prefix)
			if err != nil {
				return err
			}
			user := ref.cred.User
			if f.Changed("name") {
				user.Name = name
			}
			if f.Changed("display-name") {
				user.DisplayName = displayName
			}
			if err := s.client.UpdateUserInformation(ctx, tok, ref.cred.ID.ID, user); err != nil {
				return fmt.Errorf("cred update-user: %w", err)
			}
			uj := userJSON{ID: b64(user.ID), Name: user.Name, DisplayName: user.DisplayName}
			if a.json {
				return writeJSON(a.io.Out, map[string]any{"device": s.dev.Info().URI, "credentialId": ref.id(), "rpId": ref.rp.ID, "user": uj})
			}
			return writeTable(a.io.Out, []row{
				{"Credential", ref.id()},
				{"RP", printable(rpLabel(ref.rp))},
				{"User name", printable(user.Name)},
				{"Display name", printable(user.DisplayName)},
			})
		},
	}
	c.Flags().StringVar(&name, "name", "", "new user name")
	c.Flags().StringVar(&displayName, "display-name", "", "new display name")
	pf.register(c.Flags())
	return c
}
