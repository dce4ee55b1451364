#!/usr/bin/env bash
# make demo-rp: ctapkit plays the browser against a real WebAuthn relying party. The
# example RP (examples/webauthn-rp, built on go-webauthn) hands out options JSON; ctapkit
# turns it into a browser-style response with a softkey; the RP verifies it.
# Usage: scripts/demo-rp.sh [path/to/ctapkit] [path/to/webauthn-rp]
#        (defaults bin/ctapkit and bin/webauthn-rp, as built by make demo-rp)
set -euo pipefail

bin=${1:-bin/ctapkit}
rpbin=${2:-bin/webauthn-rp}
for b in "$bin" "$rpbin"; do
  if [[ ! -x $b ]]; then
    echo "demo-rp: $b not found; run 'make demo-rp' (it builds it first)" >&2
    exit 1
  fi
done
if ! command -v curl >/dev/null; then
  echo "demo-rp: needs curl" >&2
  exit 1
fi
# Run the binaries by their plain names from the temporary directory, so the commands
# shown below are the ones you would type.
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
ctapkit_bin=$(abs "$bin") rp_bin=$(abs "$rpbin")
ctapkit() { "$ctapkit_bin" "$@"; }

T=$(mktemp -d)
rp_pid=''
cleanup() {
  if [[ -n $rp_pid ]]; then
    kill "$rp_pid" 2>/dev/null || true
    wait "$rp_pid" 2>/dev/null || true
  fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cd "$T"
unset CTAPKIT_DEVICE CTAPKIT_SOFTKEY_PRESENCE

# Bold command lines only on a terminal, and never with NO_COLOR (https://no-color.org).
bold='' plain=''
if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
  bold=$'\033[1m' plain=$'\033[0m'
fi
show() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }
die() { echo "demo-rp: $*" >&2; exit 1; }
# pretty prints a JSON file indented (as it is when python3 is missing).
pretty() {
  if command -v python3 >/dev/null; then python3 -m json.tool "$1"; else cat "$1"; echo; fi
}
# post shows and runs one curl call to the RP, then shows the answer.
post() { # post PATH BODY OUTFILE; BODY is JSON text or @file
  local d="'$2'" url="$RP$1"
  [[ $2 == @* ]] && d=$2
  [[ $url == *\?* ]] && url="'$url'"
  show "curl -s -X POST -d $d $url > $3"
  curl -s --max-time 30 -X POST -d "$2" "$RP$1" > "$3"
  show "python3 -m json.tool $3"
  pretty "$3"
}
# finish posts a response to a finish endpoint and insists on {"ok":true,...}.
finish() { # finish PATH RESPONSEFILE OUTFILE
  post "$1" "@$2" "$3"
  grep -q '"ok":true' "$3" || die "the RP refused the response (see $3 above; its log follows)$(printf '\n'; cat "$T/.rp.log")"
}
# field reads a number or string member of the RP's one-line JSON answers.
field() { sed -n 's/.*"'"$2"'":"\{0,1\}\([^",}]*\).*/\1/p' "$1"; }

echo "ctapkit demo-rp: ctapkit and a softkey against a WebAuthn relying party (go-webauthn),"
echo "all in a temporary directory, deleted at the end."

# Start the RP on a free port; it writes the port to a file and then prints the URL.
show "webauthn-rp -addr 127.0.0.1:0 -port-file ./.rp.port &"
"$rp_bin" -addr 127.0.0.1:0 -port-file ./.rp.port > .rp.out 2> .rp.log &
rp_pid=$!
for _ in $(seq 100); do
  grep -q '^listening on ' .rp.out 2>/dev/null && break
  kill -0 "$rp_pid" 2>/dev/null || die "the RP did not start:$(printf '\n'; cat .rp.log)"
  sleep 0.1
done
grep -q '^listening on ' .rp.out || die "the RP did not say 'listening on' within 10 s"
cat .rp.out
PORT=$(cat .rp.port)
RP=http://localhost:$PORT

show "ctapkit softkey init --state ./softkey.db --no-passphrase"
ctapkit softkey init --state ./softkey.db --no-passphrase
show "export CTAPKIT_DEVICE=soft:./softkey.db"
export CTAPKIT_DEVICE=soft:./softkey.db

printf '\n# 1. Registration: the RP asks for a credential for alice.\n'
post /register/begin '{"username":"alice"}' create-options.json
show "ctapkit webauthn create --origin $RP -i create-options.json -o registration.json"
ctapkit webauthn create --origin "$RP" -i create-options.json -o registration.json
show "python3 -m json.tool registration.json"
pretty registration.json
finish "/register/finish?username=alice" registration.json registered.json
count0=$(field registered.json signCount)

printf '\n# 2. Sign in as alice, twice: the RP checks the signature and the counter.\n'
counts=()
for i in 1 2; do
  post /login/begin '{"username":"alice"}' "get-options-$i.json"
  show "ctapkit webauthn get --origin $RP -i get-options-$i.json -o assertion-$i.json"
  ctapkit webauthn get --origin "$RP" -i "get-options-$i.json" -o "assertion-$i.json"
  if [[ $i == 1 ]]; then
    show "python3 -m json.tool assertion-1.json"
    pretty assertion-1.json
  fi
  finish "/login/finish?username=alice" "assertion-$i.json" "login-$i.json"
  counts+=("$(field "login-$i.json" signCount)")
done

printf '\n# 3. Sign in without a username: empty allowCredentials, the passkey names the user.\n'
post /login/begin '{}' discoverable-options.json
show "ctapkit webauthn get --origin $RP -i discoverable-options.json -o discoverable.json"
ctapkit webauthn get --origin "$RP" -i discoverable-options.json -o discoverable.json
finish /login/finish discoverable.json login-3.json
counts+=("$(field login-3.json signCount)")
[[ $(field login-3.json user) == alice ]] || die "the discoverable login did not come back as alice"

# Each login must have raised the counter (the RP refuses one that does not go up).
prev=$count0
for c in "${counts[@]}"; do
  [[ $c =~ ^[0-9]+$ && $c -gt $prev ]] || die "signCount did not go up: $count0 -> ${counts[*]}"
  prev=$c
done

printf '\n# The RP'"'"'s log (stderr):\n'
cat .rp.log

cat <<EOF2

What happened:
  - the RP (go-webauthn, RP ID localhost, origin $RP) sent creation options;
    ctapkit made a credential on the softkey and answered with RegistrationResponseJSON,
    which the RP verified and stored (AAGUID $(field registered.json aaguid)).
  - two logins as alice and one without a username, each verified by the RP;
    the sign count went ${count0} -> ${counts[0]} -> ${counts[1]} -> ${counts[2]}.
The RP is stopped and the temporary directory deleted now. The same RP works from a
browser: go run ./examples/webauthn-rp, then open http://localhost:8080.
EOF2
