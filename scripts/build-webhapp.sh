#!/usr/bin/env bash
# Packs workdir/zerotrustml.webhapp: the hApp (make happ) with the dashboard (make dashboard) as its UI.
# The same page the service serves reads the DHT when a launcher (or the URL) names an app websocket.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
log() { echo "[build-webhapp] $*" >&2; }

UI="python/zerotrustml/service/static"
[ -f "$UI/index.html" ] || { log "no dashboard build in $UI: run make dashboard"; exit 1; }
[ -f workdir/zerotrustml.happ ] || { log "no workdir/zerotrustml.happ: run make happ"; exit 1; }
bin_dir="${HC_BIN_DIR:-$(bash scripts/install-holochain.sh | tail -n 1)}"
HC="$bin_dir/hc"
[ -x "$HC" ] || { log "hc not found at $HC"; exit 1; }

rm -f workdir/web/ui.zip
(cd "$UI" && python3 -m zipfile -c "$ROOT/workdir/web/ui.zip" index.html assets)
log "$HC web-app pack workdir/web -o workdir/zerotrustml.webhapp"
"$HC" web-app pack workdir/web -o workdir/zerotrustml.webhapp >&2
log "packed $ROOT/workdir/zerotrustml.webhapp ($(stat -c %s workdir/zerotrustml.webhapp) bytes)"
echo "$ROOT/workdir/zerotrustml.webhapp"
