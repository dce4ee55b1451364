#!/usr/bin/env bash
# make demo: a softkey in a temporary directory registers a credential and signs in with
# it, end to end through the ctapkit CLI; then openssl checks the signature from outside.
# Usage: scripts/demo.sh [path/to/ctapkit]   (default bin/ctapkit, as built by make)
set -euo pipefail

bin=${1:-bin/ctapkit}
if [[ ! -x $bin ]]; then
  echo "demo: $bin not found; run 'make demo' (it builds it first)" >&2
  exit 1
fi
# Run the binary as plain "ctapkit" from the temporary directory, so the commands shown
# below are the ones you would type: ctapkit -d soft:./softkey.db ...
bindir=$(cd "$(dirname "$bin")" && pwd)
ctapkit() { "$bindir/$(basename "$bin")" "$@"; }

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
unset CTAPKIT_DEVICE CTAPKIT_SOFTKEY_PRESENCE

# Bold command lines only on a terminal, and never with NO_COLOR (https://no-color.org).
bold='' plain=''
if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
  bold=$'\033[1m' plain=$'\033[0m'
fi
show() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }
# step shows a command, runs it and keeps a copy of its output in $T/out.
step() { show "ctapkit $*"; ctapkit "$@" | tee out; }
# signcount reads the "Sign count" row of a human output.
signcount() { awk '$1 == "Sign" && $2 == "count" { print $3 }' "$1"; }

echo "ctapkit demo: a software authenticator (softkey) in a temporary directory, deleted at the end."

step softkey init --state ./softkey.db --no-passphrase
step -d soft:./softkey.db info
step -d soft:./softkey.db make-credential --rp example.com --user alice --rk
cp out register.txt
step -d soft:./softkey.db get-assertion --rp example.com
count1=$(signcount out)
step -d soft:./softkey.db get-assertion --rp example.com --json
cp out assert.json
count0=$(signcount register.txt)
count2=$(grep -o '"signCount": [0-9]*' assert.json | head -n 1 | awk '{ print $2 }')

# Check the last signature with openssl, as a relying party would: it is an ECDSA (es256)
# signature over authData || clientDataHash, made with the key registered above.
verified="skipped (needs python3 and openssl)"
if command -v python3 >/dev/null && command -v openssl >/dev/null; then
  # The public key is the PEM block of the make-credential output.
  sed -n '/-----BEGIN PUBLIC KEY-----/,/-----END PUBLIC KEY-----/p' register.txt |
    sed 's/^.*\(-----BEGIN\)/\1/; s/^ *//' > alice.pem
  python3 - <<'EOF'
import base64, json
b64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
j = json.load(open("assert.json"))
a = j["assertions"][0]
open("signed.bin", "wb").write(b64(a["authData"]) + b64(j["clientDataHash"]))
open("signature.der", "wb").write(b64(a["signature"]))
EOF
  printf '\n# alice.pem: the public key printed by make-credential\n'
  printf '# signed.bin: authData || clientDataHash, signature.der: signature (base64url-decoded from the JSON)'
  show "openssl dgst -sha256 -verify alice.pem -signature signature.der signed.bin"
  if openssl dgst -sha256 -verify alice.pem -signature signature.der signed.bin; then
    verified="verified by openssl (Verified OK above)"
  else
    verified="DID NOT VERIFY"
  fi
fi

cat <<EOF

What happened:
  - make-credential: a resident es256 credential for alice at example.com; its self
    attestation was verified by ctapkit ("packed (self), verified").
  - get-assertion found it without --cred (it is discoverable). The sign count went up,
    ${count0} -> ${count1} -> ${count2}, kept in ./softkey.db across the separate processes.
  - the last assertion's signature: ${verified}.
The temporary directory is deleted now. Next: README.md, or 'ctapkit --help'.
EOF
[[ $verified != "DID NOT VERIFY" ]]
