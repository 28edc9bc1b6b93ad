"""Times hark's dsp front end (through its Python binding) against librosa and torchaudio
on the same audio with the same parameters, in one run, and prints the ratios.

    python bench/frontend.py [--seconds 60] [--repeats 5]

Throughput is seconds of audio processed per second of wall time (higher is better), the
best of --repeats runs, one thread each (an edge daemon runs one stream per core).
"batch" computes a whole clip in one call; "stream" feeds 10 ms hops one at a time and
gets each new frame back, which is what a live microphone needs.
"""

import argparse
import os

for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = "1"

import time  # noqa: E402

import hark_dsp  # noqa: E402
import librosa  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchaudio  # noqa: E402

torch.set_num_threads(1)
SR, N_FFT, HOP, N_MELS, OFFSET = 16000, 512, 160, 64, 1e-6


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stream-seconds", type=float, default=5.0,
                    help="audio length for the per-hop streaming comparison")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    n = int(args.seconds * SR)
    t = np.arange(n) / SR
    y = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(n)).astype(np.float32)

    fe = hark_dsp.Frontend({"n_fft": N_FFT, "hop_length": HOP, "n_mels": N_MELS, "log_offset": OFFSET})
    ta = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, f_min=0.0, f_max=SR / 2,
        power=2.0, center=True, pad_mode="constant", norm="slaney", mel_scale="slaney")
    yt = torch.from_numpy(y)

    def run_librosa(x):
        m = librosa.feature.melspectrogram(y=x, sr=SR, n_fft=N_FFT, hop_length=HOP,
                                           n_mels=N_MELS, pad_mode="constant")
        return np.log(m + OFFSET)

    def run_torchaudio(x):
        with torch.inference_mode():
            return torch.log(ta(x) + OFFSET)

    # Same parameters, same output: check before timing.
    ours, ref = fe.logmel(y[:SR], SR), run_librosa(y[:SR])
    assert ours.shape == ref.shape and np.abs(ours - ref).max() < 1e-3, "outputs disagree"

    batch = {
        "hark dsp": best_of(lambda: fe.logmel(y, SR), args.repeats),
        "librosa": best_of(lambda: run_librosa(y), args.repeats),
        "torchaudio": best_of(lambda: run_torchaudio(yt), args.repeats),
    }

    # Streaming: librosa and torchaudio get each new 512-sample frame (center=False) and
    # return one frame; hark's Stream gets each new 160-sample hop and returns one frame.
    ns = int(args.stream_seconds * SR)
    frames = [y[i:i + N_FFT] for i in range(0, ns - N_FFT, HOP)]
    hops = [y[i:i + HOP] for i in range(0, ns, HOP)]
    stream_fe = hark_dsp.Frontend({"center": False, "log_offset": OFFSET})
    lib_frame = lambda f: librosa.feature.melspectrogram(  # noqa: E731
        y=f, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, center=False)
    ta_frame = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, center=False,
        norm="slaney", mel_scale="slaney")
    frames_t = [torch.from_numpy(f) for f in frames]

    def stream(fn, xs):
        return lambda: [fn(x) for x in xs]

    def ta_stream_one(x):
        with torch.inference_mode():
            return torch.log(ta_frame(x) + OFFSET)

    stream_t = {
        "hark dsp": best_of(stream(hark_dsp.Stream(stream_fe).push, hops), args.repeats),
        "librosa": best_of(stream(lambda f: np.log(lib_frame(f) + OFFSET), frames), args.repeats),
        "torchaudio": best_of(stream(ta_stream_one, frames_t), args.repeats),
    }

    print(f"log-mel, {SR} Hz, n_fft {N_FFT}, hop {HOP}, {N_MELS} mels, 1 thread; "
          f"librosa {librosa.__version__}, torchaudio {torchaudio.__version__}")
    for mode, times, secs in (("batch", batch, args.seconds), ("stream", stream_t, args.stream_seconds)):
        print(f"\n{mode} ({secs:g} s of audio)")
        print(f"  {'':12} {'audio s / s':>12} {'hark dsp is':>12}")
        for name, tm in times.items():
            ratio = tm / times["hark dsp"]
            print(f"  {name:12} {secs / tm:12.0f} {'' if name == 'hark dsp' else f'{ratio:10.1f}x':>12}")


if __name__ == "__main__":
    main()
