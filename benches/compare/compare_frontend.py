#!/usr/bin/env python3
"""Front-end comparison: voiceprint (release binary) vs kaldi-native-fbank and librosa.

Builds 10-minute and 1-hour 16 kHz PCM16 WAVs by tiling fixtures/golden/inputs/c_flite_slt.wav, then
  1. in-process fbank80 time of kaldi-native-fbank (golden recipe) and of librosa (log-mel, same
     frame/FFT/bin sizes; not bit-compatible, a workload reference), best of N runs;
  2. whole-process time and peak RSS (/usr/bin/time -v) of
       voiceprint features WAV --kind fbank80 --cmn --out X.npy
     vs the same job in Python: soundfile read + kaldi_native_fbank fbank80 + CMN + np.save
     (benches/compare/knf_features.py);
  3. max |voiceprint - kaldi-native-fbank| on the 10-minute file (agreement check).

Usage: python benches/compare/compare_frontend.py --bin target/release/voiceprint --workdir /tmp/vp-bench
"""
import argparse
import os
import re
import subprocess
import sys
import time
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SRC = os.path.join(ROOT, "fixtures", "golden", "inputs", "c_flite_slt.wav")


def read_wav(path):
    with wave.open(path, "rb") as w:
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def write_tiled(path, seconds):
    if os.path.exists(path):
        return
    sr, x = read_wav(SRC)
    n = seconds * sr
    y = np.resize(x, n)  # tiles
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(y.astype("<i2").tobytes())


def knf_fbank80(x):
    import kaldi_native_fbank as knf
    o = knf.FbankOptions()
    fo = o.frame_opts
    fo.samp_freq = 16000.0
    fo.frame_shift_ms = 10.0
    fo.frame_length_ms = 25.0
    fo.dither = 0.0
    fo.preemph_coeff = 0.97
    fo.remove_dc_offset = True
    fo.window_type = "povey"
    fo.round_to_power_of_two = True
    fo.snip_edges = True
    o.mel_opts.num_bins = 80
    o.mel_opts.low_freq = 20.0
    o.mel_opts.high_freq = 0.0
    o.use_energy = False
    o.use_log_fbank = True
    o.use_power = True
    comp = knf.OnlineFbank(o)
    comp.accept_waveform(16000.0, x)
    comp.input_finished()
    n = comp.num_frames_ready
    if hasattr(comp, "get_frames"):
        return np.asarray(comp.get_frames(list(range(n))), dtype=np.float32)
    return np.stack([np.asarray(comp.get_frame(i)) for i in range(n)]).astype(np.float32)


def librosa_logmel(x):
    import librosa
    m = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=512, hop_length=160, win_length=400,
                                       window="hann", center=False, power=2.0, n_mels=80, fmin=20.0,
                                       fmax=8000.0, htk=True)
    return np.log(np.maximum(m, 1.1920929e-07)).T


def best_of(fn, x, runs):
    best = float("inf")
    out = None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn(x)
        best = min(best, time.perf_counter() - t)
    return best, out


def time_v(cmd):
    r = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", r.stderr)
    h, m, s = wall.groups()
    secs = (int(h) if h else 0) * 3600 + int(m) * 60 + float(s)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    return secs, rss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "voiceprint"))
    ap.add_argument("--workdir", default="/tmp/vp-bench")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    rows = []
    for label, seconds in (("10 min", 600), ("1 h", 3600)):
        wav = os.path.join(a.workdir, f"tiled_{seconds}s_16k.wav")
        write_tiled(wav, seconds)
        _, x16 = read_wav(wav)
        x = x16.astype(np.float32)
        runs = a.runs if seconds <= 600 else 1
        t_knf, f_knf = best_of(knf_fbank80, x, runs)
        t_lib, _ = best_of(librosa_logmel, x / 32768.0, runs)
        out_vp = os.path.join(a.workdir, f"vp_{seconds}.npy")
        out_py = os.path.join(a.workdir, f"knf_{seconds}.npy")
        vp = min((time_v([a.bin, "features", wav, "--kind", "fbank80", "--cmn", "--out", out_vp])
                  for _ in range(runs)), key=lambda r: r[0])
        py = time_v([sys.executable, os.path.join(HERE, "knf_features.py"), wav, out_py])
        diff = ""
        if seconds <= 600:
            mine = np.load(out_vp)
            ref = f_knf.astype(np.float64)
            ref = (ref - ref.mean(axis=0)).astype(np.float32)
            diff = f"{np.abs(mine - ref).max():.2e}"
        rows.append((label, seconds, t_knf, t_lib, vp, py, diff, x.nbytes, f_knf.nbytes))
    print("| audio | knf fbank80 (in-process) | librosa log-mel (in-process) | voiceprint features (process) | "
          "knf+soundfile+CMN (process) | process speed-up | peak RSS voiceprint / python | max abs diff vs knf |")
    print("|---|---|---|---|---|---|---|---|")
    for label, s, t_knf, t_lib, vp, py, diff, xb, fb in rows:
        print(f"| {label} | {t_knf:.3f} s ({s / t_knf:,.0f}×) | {t_lib:.3f} s ({s / t_lib:,.0f}×) | "
              f"{vp[0]:.3f} s ({s / vp[0]:,.0f}×) | {py[0]:.3f} s ({s / py[0]:,.0f}×) | {py[0] / vp[0]:.1f}× | "
              f"{vp[1]:.0f} MB / {py[1]:.0f} MB | {diff} |")
        print(f"<!-- {label}: decoded f32 samples {xb / 2**20:.0f} MiB, fbank80 f32 output {fb / 2**20:.0f} MiB -->")


if __name__ == "__main__":
    main()
