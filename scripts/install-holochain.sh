#!/usr/bin/env bash
# Install holochain 0.6.3, hc 0.6.3 and kitsune2-bootstrap-srv 0.4.1 from
# crates.io into a cache outside the repository, keyed by version and
# transport. Idempotent: a second call with the binaries present does nothing.
#
# Transport: tryorama 0.19 asks `hc sandbox` for a webrtc network, which the
# default iroh builds lack, so we build the tx5 go-pion backend (needs Go >= 1.24)
# and the bootstrap server with its sbd signal relay.
#
# Prints the bin directory on the last line of stdout.
set -euo pipefail

HC_VERSION=0.6.3
K2_VERSION=0.4.1
FLAVOUR=gopion
CACHE_ROOT=${ZTML_CACHE:-$HOME/.cache/zerotrustml}
PREFIX="$CACHE_ROOT/holochain-$HC_VERSION-k2-$K2_VERSION-$FLAVOUR"
BIN="$PREFIX/bin"
TARGET="$CACHE_ROOT/cargo-target-holochain-$HC_VERSION"
LOG="$PREFIX/install.log"
mkdir -p "$PREFIX" "$TARGET"

have() { [ -x "$BIN/$1" ]; }
log() { printf '[install-holochain %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$LOG" >&2; }

if have holochain && have hc && have kitsune2-bootstrap-srv; then
  log "cached: $BIN"
  echo "$BIN"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  log "go is required for the tx5 go-pion transport"; exit 1
fi
for pkg in build-essential perl make pkg-config; do
  if ! dpkg -s "$pkg" >/dev/null 2>&1; then
    log "installing Debian build packages"
    apt-get update -qq && apt-get install -y -qq build-essential perl make pkg-config >&2
    break
  fi
done

export CARGO_TARGET_DIR="$TARGET"
jobs=${CARGO_BUILD_JOBS:-$(nproc)}
start=$(date +%s)

install_one() { # crate version binary features...
  local crate=$1 version=$2 binary=$3; shift 3
  if have "$binary"; then log "$binary already built"; return; fi
  local t0; t0=$(date +%s)
  log "building $crate $version ($*) with $jobs jobs; cargo output in $LOG"
  cargo install "$crate" --version "$version" --locked --root "$PREFIX" -j "$jobs" "$@" >>"$LOG" 2>&1 \
    || { log "FAILED: $crate (tail of $LOG follows)"; tail -n 40 "$LOG" >&2; exit 1; }
  log "$binary built in $(( $(date +%s) - t0 )) s"
}

install_one kitsune2_bootstrap_srv "$K2_VERSION" kitsune2-bootstrap-srv --no-default-features --features sbd
install_one holochain "$HC_VERSION" holochain --no-default-features \
  --features sqlite-encrypted,schema,wasmer_sys,transport-tx5-backend-go-pion
install_one holochain_cli "$HC_VERSION" hc --no-default-features \
  --features wasmer_sys,transport-tx5-backend-go-pion

log "all built in $(( $(date +%s) - start )) s"
echo "$BIN"
