#!/usr/bin/env bash
# Build the ZeroTrustML zomes to wasm32 and pack workdir/zerotrustml.happ,
# and, for the attack tests only, workdir/zerotrustml-byzantine.happ: the same
# DNA (integrity zome and properties, generated from dnas/zerotrustml/dna.yaml
# so the two cannot drift) with the test-only `byzantine` coordinator beside
# the honest one. Coordinators are not part of the DNA hash, so its agents
# join the same networks.
#
#   bash scripts/build-happ.sh            # build + pack (needs hc)
#   bash scripts/build-happ.sh --wasm-only
#   bash scripts/build-happ.sh --wasm-only --with-bench   # also validation_cost.wasm (benchmarks/)
#
# Idempotent: cargo rebuilds only what changed, packing is cheap. The zomes
# get their own CARGO_TARGET_DIR (target/wasm) so wasm and native builds never
# invalidate each other. `hc` comes from scripts/install-holochain.sh (cached
# build; prints its bin dir last), or from HC_BIN_DIR / PATH if set.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

WASM_ONLY=0
WITH_BENCH=0
for arg in "$@"; do
  case "$arg" in
    --wasm-only) WASM_ONLY=1 ;;
    --with-bench) WITH_BENCH=1 ;;
    *) printf 'build-happ: unknown option %s\n' "$arg" >&2; exit 2 ;;
  esac
done

TARGET=wasm32-unknown-unknown
export CARGO_TARGET_DIR="$ROOT/target/wasm"
WASM_DIR="$CARGO_TARGET_DIR/$TARGET/release"
ZOMES=(gradients_integrity gradients byzantine)
# The validators' recompute at the DNA bounds, built exactly like the zomes (benchmarks/validation_cost.py).
[ "$WITH_BENCH" = 1 ] && ZOMES+=(validation_cost)

log() { printf '[build-happ %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# hdi/hdk pull getrandom 0.3 on wasm32 and register the conductor as its
# random source, which getrandom only accepts through this cfg.
RUSTFLAGS_WASM='--cfg getrandom_backend="custom"'

cargo_cmd=(cargo)
build_std=()
if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  :
elif rustup target add "$TARGET" >&2 2>/dev/null; then
  log "installed rustup target $TARGET"
elif [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] && [ -d /usr/lib/rustlib/src/rust/library ]; then
  # Debian's rustc-web toolchain without a prebuilt wasm std: build std
  # ourselves (docs/HOLOCHAIN.md, "Zomes to wasm").
  log "no rustup $TARGET; using Debian rustc-web with -Zbuild-std"
  export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
  cargo_cmd=(/usr/bin/cargo)
  build_std=(-Zbuild-std=std,panic_abort)
else
  log "no $TARGET target: run 'rustup target add $TARGET' or install rustc-web cargo-web rust-web-src lld-22 (docs/HOLOCHAIN.md)"
  exit 1
fi

# Rust >= 1.96 stopped letting undefined symbols through the wasm link by
# default; the conductor's host functions must stay imports.
rust_minor=$("${RUSTC:-rustc}" -V | sed -E 's/^rustc 1\.([0-9]+).*/\1/')
if [ "${rust_minor:-0}" -ge 96 ]; then
  RUSTFLAGS_WASM="$RUSTFLAGS_WASM -C link-arg=--import-undefined"
fi
export RUSTFLAGS="$RUSTFLAGS_WASM"

# The workspace release profile is tuned for the native core (panic=unwind
# for the FFI boundary, opt-level 3). Zomes want abort (a panic traps and the
# call fails cleanly) and small code (the conductor compiles every wasm it
# installs).
export CARGO_PROFILE_RELEASE_PANIC=abort
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z

pkg_args=()
for z in "${ZOMES[@]}"; do pkg_args+=(-p "${z//validation_cost/validation-cost}"); done

log "cargo build --release --target $TARGET ${pkg_args[*]} (RUSTFLAGS=$RUSTFLAGS, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
t0=$(date +%s)
"${cargo_cmd[@]}" build --release --target "$TARGET" "${build_std[@]}" "${pkg_args[@]}" >&2
log "wasm build done in $(( $(date +%s) - t0 )) s"
for z in "${ZOMES[@]}"; do
  [ -f "$WASM_DIR/$z.wasm" ] || { log "missing $WASM_DIR/$z.wasm"; exit 1; }
  log "  $z.wasm $(stat -c %s "$WASM_DIR/$z.wasm") bytes"
done

[ "$WASM_ONLY" = 1 ] && exit 0

if [ -n "${HC_BIN_DIR:-}" ] && [ -x "$HC_BIN_DIR/hc" ]; then
  HC="$HC_BIN_DIR/hc"
else
  log "locating hc via scripts/install-holochain.sh"
  bin_dir=$(bash "$ROOT/scripts/install-holochain.sh" | tail -n 1)
  HC="$bin_dir/hc"
fi
[ -x "$HC" ] || { log "hc not found at $HC"; exit 1; }

mkdir -p workdir
log "$HC dna pack dnas/zerotrustml -o workdir/zerotrustml.dna"
"$HC" dna pack dnas/zerotrustml -o workdir/zerotrustml.dna >&2
log "$HC app pack workdir -o workdir/zerotrustml.happ"
"$HC" app pack workdir -o workdir/zerotrustml.happ >&2
log "packed $ROOT/workdir/zerotrustml.happ ($(stat -c %s workdir/zerotrustml.happ) bytes)"

# The attack tests' hApp: generated manifests under target/ (same depth as dnas/zerotrustml, so the wasm
# paths stay valid), never committed.
BYZ_DNA="$ROOT/target/byzantine-dna/dnas/zerotrustml-byzantine"
BYZ_APP="$ROOT/target/byzantine-dna/workdir"
mkdir -p "$BYZ_DNA" "$BYZ_APP"
sed 's|\.\./\.\./target/wasm|'"$ROOT"'/target/wasm|' dnas/zerotrustml/dna.yaml > "$BYZ_DNA/dna.yaml"
cat >> "$BYZ_DNA/dna.yaml" <<YAML
    - name: byzantine
      hash: null
      path: $WASM_DIR/byzantine.wasm
      dependencies:
        - name: gradients_integrity
YAML
"$HC" dna pack "$BYZ_DNA" -o workdir/zerotrustml-byzantine.dna >&2
sed -e 's|^name: zerotrustml$|name: zerotrustml-byzantine|' \
    -e 's|path: ./zerotrustml.dna|path: '"$ROOT"'/workdir/zerotrustml-byzantine.dna|' workdir/happ.yaml > "$BYZ_APP/happ.yaml"
"$HC" app pack "$BYZ_APP" -o workdir/zerotrustml-byzantine.happ >&2
log "packed $ROOT/workdir/zerotrustml-byzantine.happ (attack tests only)"
echo "$ROOT/workdir/zerotrustml.happ"
