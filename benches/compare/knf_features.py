#!/usr/bin/env python3
"""The Python equivalent of `voiceprint features WAV --kind fbank80 --cmn --out OUT.npy`:
soundfile decode + kaldi-native-fbank (golden recipe) + CMN + np.save. Usage: knf_features.py WAV OUT.npy"""
import os
import sys

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_frontend import knf_fbank80  # noqa: E402

x, sr = sf.read(sys.argv[1], dtype="int16")
assert sr == 16000
f = knf_fbank80(x.astype(np.float32)).astype(np.float64)
np.save(sys.argv[2], (f - f.mean(axis=0)).astype(np.float32))
