package main

// All output formatting lives here: JSON shapes of the CLI contract, human tables,
// and the conversions (base64url, UUIDs, CBOR to JSON) they share.

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/ctapkit/ctapkit/ctap2"
)

// b64 is the contract's encoding for bytes in JSON: base64url without padding.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// uuid formats a 16-byte AAGUID as 8-4-4-4-12 hex.
func uuid(b []byte) string {
	if len(b) != 16 {
		return hex.EncodeToString(b)
	}
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// row is one line of a human key/value table.
type row struct{ key, value string }

func writeTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		// Multi-line values (PEM) continue under the value column.
		lines := strings.Split(strings.TrimRight(r.value, "\n"), "\n")
		fmt.Fprintf(tw, "%s\t%s\n", r.key, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(tw, "\t%s\n", l)
		}
	}
	return tw.Flush()
}

// flagsJSON is the contract's "flags" object.
type flagsJSON struct {
	UP bool `json:"up"`
	UV bool `json:"uv"`
	BE bool `json:"be"`
	BS bool `json:"bs"`
	AT bool `json:"at"`
	ED bool `json:"ed"`
}

func newFlagsJSON(f ctap2.AuthFlags) flagsJSON {
	return flagsJSON{UP: f.Has(ctap2.FlagUP), UV: f.Has(ctap2.FlagUV), BE: f.Has(ctap2.FlagBE),
		BS: f.Has(ctap2.FlagBS), AT: f.Has(ctap2.FlagAT), ED: f.Has(ctap2.FlagED)}
}

// cborJSON converts an encoded CBOR item (attStmt, extension outputs) to a JSON-ready
// value: byte strings become base64url, map keys strings. nil for empty input.
// extensionsJSON renders authenticator-data extension outputs; none is {} so that
// scripts can index it without a null check.
func extensionsJSON(raw []byte) any {
	if len(raw) == 0 {
		return map[string]any{}
	}
	return cborJSON(raw)
}

func cborJSON(raw []byte) any {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := ctap2.Unmarshal(raw, &v); err != nil {
		return b64(raw)
	}
	return jsonValue(v)
}

func jsonValue(v any) any {
	switch t := v.(type) {
	case []byte:
		return b64(t)
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonValue(e)
		}
		return m
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = jsonValue(e)
		}
		return out
	case *big.Int:
		return t.String()
	}
	return v
}

// yesNo renders a bool for human tables.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// optionList renders getInfo options as "rk, up, clientPin=false", sorted.
func optionList(opts map[string]bool) string {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if opts[k] {
			parts = append(parts, k)
		} else {
			parts = append(parts, k+"=false")
		}
	}
	return strings.Join(parts, ", ")
}

// extensionSummary is the human form of authenticator-data extension outputs,
// e.g. "credProtect=2, hmac-secret, credBlob stored"; "" when there are none.
func extensionSummary(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	o, err := ctap2.ParseExtensionOutputs(raw)
	if err != nil {
		return "unreadable: " + err.Error()
	}
	var parts []string
	if o.CredProtect != 0 {
		parts = append(parts, fmt.Sprintf("credProtect=%d", o.CredProtect))
	}
	if o.HMACSecret != nil && *o.HMACSecret {
		parts = append(parts, "hmac-secret")
	}
	if len(o.HMACSecretOutput) > 0 || len(o.HMACSecretMC) > 0 {
		parts = append(parts, "hmac-secret output")
	}
	if o.CredBlobStored != nil {
		parts = append(parts, "credBlob "+map[bool]string{true: "stored", false: "not stored"}[*o.CredBlobStored])
	}
	if o.CredBlob != nil {
		parts = append(parts, "credBlob="+hex.EncodeToString(o.CredBlob))
	}
	if o.MinPINLength != nil {
		parts = append(parts, fmt.Sprintf("minPinLength=%d", *o.MinPINLength))
	}
	for name := range o.Other {
		parts = append(parts, name)
	}
	slices.Sort(parts[len(parts)-len(o.Other):])
	return strings.Join(parts, ", ")
}
