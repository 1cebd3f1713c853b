#!/usr/bin/env bash
# Throughput of `voiceprint batch` against a release server on loopback.
#
#   cargo build --release
#   benches/batch/run.sh /path/to/devset 200
#
# Builds the complaint set with make_manifest.py, starts `voiceprint serve` on a fresh data
# directory, enrols every dev-set speaker (~30 s of studio audio each), puts one voice on a
# watchlist, then times `voiceprint batch` over the complaints (8 kHz G.711 mu-law WAV copies).
set -euo pipefail
BIN=${BIN:-target/release/voiceprint}
DEVSET=${1:?usage: run.sh DEVSET [N_COMPLAINTS]}
N=${2:-200}
PORT=${PORT:-50777}
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d)
python3 "$(dirname "$0")/make_manifest.py" "$DEVSET" "$WORK" "$N"
cat > "$WORK/server.toml" <<TOML
listen = "127.0.0.1:$PORT"
data_dir = "$WORK/data"
required_speech_seconds = 10.0
TOML
"$BIN" serve --config "$WORK/server.toml" 2> "$WORK/server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 120); do
  grep -q "voiceprint serving" "$WORK/server.log" && break
  sleep 0.5
done
for sp in $(tail -n +2 "$WORK/enroll.csv" | cut -d, -f1 | sort -u); do
  # shellcheck disable=SC2046
  "$BIN" enroll --server "$URL" --timeout 600 "$sp" $(awk -F, -v s="$sp" '$1==s {print $2}' "$WORK/enroll.csv") > /dev/null
done
"$BIN" watchlist --server "$URL" create fraud > /dev/null
"$BIN" watchlist --server "$URL" add fraud e-menardi --speaker ast_menardi > /dev/null
audio_s=$(python3 - "$DEVSET" "$WORK/complaints.csv" <<'PY'
import csv, sys, os
dev = sys.argv[1]
secs = {os.path.join(dev, "tel", r["path"][:-4] + ".ulaw.wav"): float(r["seconds"])
        for r in csv.DictReader(open(os.path.join(dev, "manifest.csv")))}
print(f'{sum(secs[r["audio"]] for r in csv.DictReader(open(sys.argv[2]))):.1f}')
PY
)
start=$(date +%s.%N)
"$BIN" batch --server "$URL" --manifest "$WORK/complaints.csv" --out "$WORK/results.jsonl" --quiet \
  ${BATCH_ARGS:-}
end=$(date +%s.%N)
python3 - "$start" "$end" "$N" "$audio_s" <<'PY'
import sys
start, end, n, audio = map(float, sys.argv[1:])
t = end - start
print(f"{int(n)} complaints, {audio:.0f} s of audio in {t:.1f} s: "
      f"{n / t:.2f} complaints/s, {audio / t:.1f} s of audio per second")
PY
