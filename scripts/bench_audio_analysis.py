#!/usr/bin/env python3
"""Side-by-side timing of brisk's audio analysis and librosa (+pyloudnorm)
for the same feature set, alternating, in one run (BENCHMARKS.md, issue 22).

    python scripts/bench_audio_analysis.py BRISK_ANALYZE_BIN FILE [ROUNDS]

BRISK_ANALYZE_BIN is the release build of
`cargo build --release -p brisk-audio --example analyze`. Three timings:
- brisk: the example binary, from process start (wall clock), asked for
  librosa's feature set (`--features`: everything but danceability, which
  librosa lacks; key comes from the same chroma), and again with every
  feature ("brisk_all") for the record;
- librosa cold: a fresh `python -c` that imports librosa and analyses
  (from process start, as a CLI or a freshly started worker would);
- librosa warm: in this process, librosa imported and its numba functions
  compiled by a first call on a 2 s clip (a long-running worker).
"""
import resource
import subprocess
import sys
import time

ANALYSE = r'''
import numpy as np, librosa, soundfile as sf, pyloudnorm as pyln
def analyse(path):
    data, rate = sf.read(path, always_2d=True)
    lufs = pyln.Meter(rate).integrated_loudness(data)
    y, sr = librosa.load(path, sr=22050, mono=True)
    tempo, beats = librosa.beat.beat_track(y=y, sr=sr)
    out = dict(lufs=lufs, tempo=tempo,
        mfcc=librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13).mean(axis=1),
        chroma=librosa.feature.chroma_stft(y=y, sr=sr, tuning=0.0).mean(axis=1),
        rms=librosa.feature.rms(y=y).mean(),
        centroid=librosa.feature.spectral_centroid(y=y, sr=sr).mean(),
        rolloff=librosa.feature.spectral_rolloff(y=y, sr=sr).mean(),
        flatness=librosa.feature.spectral_flatness(y=y).mean(),
        zcr=librosa.feature.zero_crossing_rate(y).mean())
    return out
'''


def main():
    binary, path = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    ns = {}
    exec(ANALYSE, ns)
    import soundfile as sf
    import numpy as np
    warm_clip = "/tmp/_bench_warm.wav"
    sf.write(warm_clip, np.random.default_rng(0).standard_normal(44100) * 0.1, 22050)
    ns["analyse"](warm_clip)
    # Wall clock and CPU seconds (user + system, all threads): on a shared,
    # loaded machine the CPU time is the steadier measure of the work done.
    times = {"brisk": [], "brisk_all": [], "librosa_cold": [], "librosa_warm": []}
    same_set = "loudness,tempo,key,rms,spectral,zero_crossing_rate,mfcc,chroma"
    cpu = {k: [] for k in times}

    def children_cpu():
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def self_cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    for _ in range(rounds):
        t, c = time.perf_counter(), children_cpu()
        subprocess.run([binary, path, "--features", same_set], check=True, capture_output=True)
        times["brisk"].append(time.perf_counter() - t)
        cpu["brisk"].append(children_cpu() - c)
        t, c = time.perf_counter(), children_cpu()
        subprocess.run([binary, path], check=True, capture_output=True)
        times["brisk_all"].append(time.perf_counter() - t)
        cpu["brisk_all"].append(children_cpu() - c)
        t, c = time.perf_counter(), children_cpu()
        subprocess.run([sys.executable, "-c", ANALYSE + f"\nanalyse({path!r})"], check=True,
                       capture_output=True)
        times["librosa_cold"].append(time.perf_counter() - t)
        cpu["librosa_cold"].append(children_cpu() - c)
        t, c = time.perf_counter(), self_cpu()
        ns["analyse"](path)
        times["librosa_warm"].append(time.perf_counter() - t)
        cpu["librosa_warm"].append(self_cpu() - c)
    med = lambda v: sorted(v)[len(v) // 2]
    for k in times:
        print(f"{k:13s} wall median {med(times[k]):7.2f} s runs {[round(x, 2) for x in times[k]]}"
              f"  cpu median {med(cpu[k]):7.2f} s runs {[round(x, 2) for x in cpu[k]]}")
    for what, d in (("wall", times), ("cpu", cpu)):
        per_round_cold = [c / b for c, b in zip(d["librosa_cold"], d["brisk"])]
        per_round_warm = [w / b for w, b in zip(d["librosa_warm"], d["brisk"])]
        print(f"{what}: librosa cold / brisk {[round(x, 1) for x in per_round_cold]} "
              f"(median {med(per_round_cold):.1f}x), warm / brisk "
              f"{[round(x, 1) for x in per_round_warm]} (median {med(per_round_warm):.1f}x)")


if __name__ == "__main__":
    main()
