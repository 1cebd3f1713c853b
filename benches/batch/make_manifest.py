#!/usr/bin/env python3
"""Builds the `voiceprint batch` throughput set from the development set (deterministic).

Usage: make_manifest.py DEVSET OUTDIR [N_COMPLAINTS]

Writes OUTDIR/enroll.csv (speaker,file: ~30 s of studio audio per speaker, every speaker of the dev
set) and OUTDIR/complaints.csv (complaint_id,customer_id,audio: G.711 mu-law telephony copies of
clips not used for enrolment, 2-12 s long). Two complaints in three are made for the speaker's own
customer id, one in three for another customer's.
"""
import csv
import os
import sys

devset, out = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
os.makedirs(out, exist_ok=True)
rows = list(csv.DictReader(open(os.path.join(devset, "manifest.csv"))))
by_speaker = {}
for r in rows:
    by_speaker.setdefault(r["speaker"], []).append(r)
speakers = sorted(by_speaker)
enrolled, candidates = {}, {}
for sp in speakers:
    clips = sorted(by_speaker[sp], key=lambda r: (-float(r["seconds"]), r["path"]))
    used, total = [], 0.0
    for c in clips:
        if total >= 30.0 or len(used) >= len(clips) // 2:
            break
        used.append(c["path"])
        total += float(c["seconds"])
    enrolled[sp] = used
    rest = sorted(
        (c for c in clips if c["path"] not in used and 2.0 <= float(c["seconds"]) <= 12.0),
        key=lambda r: r["path"],
    )
    candidates[sp] = [
        p for p in (os.path.join("tel", c["path"][:-4] + ".ulaw.wav") for c in rest)
        if os.path.exists(os.path.join(devset, p))
    ]
with open(os.path.join(out, "enroll.csv"), "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["speaker", "file"])
    for sp in speakers:
        for p in enrolled[sp]:
            w.writerow([sp, os.path.join(devset, p)])
with open(os.path.join(out, "complaints.csv"), "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["complaint_id", "customer_id", "audio"])
    cursor = {sp: 0 for sp in speakers}
    i = 0
    while i < n:
        sp = speakers[i % len(speakers)]
        pool = candidates[sp]
        if not pool:
            speakers.remove(sp)
            continue
        clip = pool[cursor[sp] % len(pool)]
        cursor[sp] += 1
        customer = sp if i % 3 else speakers[(i * 7 + 3) % len(speakers)]
        w.writerow([f"k{i:04d}", customer, os.path.join(devset, clip)])
        i += 1
