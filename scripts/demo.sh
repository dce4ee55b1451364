#!/usr/bin/env bash
# make demo: a softkey registers a credential and asserts with it, end to end.
set -euo pipefail
bin=${1:-bin/ctapkit}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
state="$T/softkey.db"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step "$bin" softkey init --state "$state" --no-passphrase
step "$bin" -d "soft:$state" info
step "$bin" -d "soft:$state" make-credential --rp example.com --user alice --rk
step "$bin" -d "soft:$state" get-assertion --rp example.com
step "$bin" -d "soft:$state" get-assertion --rp example.com
printf '\nThe sign count went up between the two assertions; the softkey state is in %s (deleted now).\n' "$state"
