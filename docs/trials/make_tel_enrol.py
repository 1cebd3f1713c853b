# Makes the telephone-enrolment trial list used in docs/accuracy.md; set DEV (the dev set) and OUT.
# Writes trials_tel_enrol_tel.csv: trials_tel.csv with the enrolment side replaced by its 8 kHz
# µ-law 300-3400 Hz copy (the dev set's own copy where it exists, else made here with the dev set's sox recipe).
import csv, os, subprocess
DEV = "/work/devset"; OUT = "/work/eval-out"
rows = list(csv.DictReader(open(f"{DEV}/trials_tel.csv")))
made = 0
def tel(e):
    global made
    p = f"{DEV}/tel/{e[:-4]}.ulaw.wav"
    if os.path.exists(p):
        return p
    q = f"{OUT}/tel-enrol/{e[:-4]}.ulaw.wav"
    if not os.path.exists(q):
        os.makedirs(os.path.dirname(q), exist_ok=True)
        subprocess.run(["sox", "-D", "-V1", f"{DEV}/{e}", "-r", "8000", "-c", "1", "-e", "mu-law", q,
                        "rate", "8000", "sinc", "300-3400"], check=True)
        made += 1
    return q
with open(f"{OUT}/trials_tel_enrol_tel.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["enroll", "test", "target"])
    for r in rows:
        w.writerow([tel(r["enroll"]), f"{DEV}/{r['test']}", r["target"]])
print("made", made, "copies;", len(rows), "trials")
