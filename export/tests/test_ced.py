"""CED-Tiny in PyTorch (hark_export/ced.py) against its own ONNX export in onnxruntime (the
crate `soundevents` 0.5.0's `models/tiny.onnx`, waveform in), and hark's CED front end
(dsp::FrontendConfig::ced) against the graph's own on real recordings.

The crates are downloaded from crates.io once (fetch_model, into $HARK_CACHE/ced).
"""

from pathlib import Path

import hark_dsp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hark_export import data
from hark_export.ced import (CED_FRONTEND, CED_TAPS, DEPTH, SILENCE_DB, CEDEncoder,
                             class_names, fetch_model, load_ced)
from hark_export.config import model_config
from hark_export.model import build_model

RATE = 16000
# Real recordings: rain, a hen clucking, a heavy gate (Debian packages; daemon/assets/README.md).
DEMO = Path(__file__).resolve().parents[2] / "daemon" / "assets" / "demo.wav"


@pytest.fixture(scope="module")
def encoder() -> CEDEncoder:
    return load_ced("ced")[0]


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """The soundevents export with its log-mel (`mul_53`, before CED's BatchNorm) as a second
    output; onnxruntime without graph optimisations (they fuse the int8 weights into int8
    arithmetic, as soundevents also avoids)."""
    model = onnx.load(str(fetch_model() / "tiny.onnx"))
    model.graph.output.append(onnx.helper.make_tensor_value_info("mul_53", onnx.TensorProto.FLOAT,
                                                                 None))
    path = tmp_path_factory.mktemp("ced") / "tiny-logmel.onnx"
    onnx.save(model, str(path))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options)
    return lambda wave: session.run(["logits", "mul_53"], {"waveform": wave[None]})


def windows() -> list[np.ndarray]:
    """The demo clip (10 s: one window), at 16 kHz."""
    samples, rate = data.read_audio(DEMO)
    assert rate == RATE
    return [samples[i:i + 10 * RATE] for i in range(0, len(samples) - 10 * RATE + 1, 10 * RATE)]


def reference_logmel(wave: np.ndarray) -> np.ndarray:
    """torchaudio's MelSpectrogram + AmplitudeToDB as CED configures them, in float64 numpy
    (periodic Hann 512, hop 160, centred with zeros as hark pads, power, HTK mel 0-8000 Hz
    without norm, 10 log10 max(., 1e-10)): [64, T]."""
    n_fft, hop = 512, 160
    x = np.pad(wave.astype(np.float64), n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = 700 * (10 ** (np.linspace(mel(0), mel(8000), 66) / 2595) - 1)
    bins = np.linspace(0, RATE / 2, n_fft // 2 + 1)
    up = (bins[None] - hz[:-2, None]) / (hz[1:-1] - hz[:-2])[:, None]
    down = (hz[2:, None] - bins[None]) / (hz[2:] - hz[1:-1])[:, None]
    fb = np.maximum(0, np.minimum(up, down))  # (64, 257)
    return 10 * np.log10(np.maximum(fb @ power.T, 1e-10))


def test_the_front_end_is_ceds_float_front_end_exactly():
    """hark_dsp's `ced` front end equals torchaudio's float computation (the one CED was
    trained with) on real audio, to float32 rounding."""
    fe = hark_dsp.Frontend(CED_FRONTEND)
    for wave in windows():
        ours = fe.logmel(wave, RATE)
        ref = reference_logmel(wave)
        assert ours.shape == ref.shape == (64, 1001)
        # Loud bins agree to float32 rounding; near the -100 dB floor dB amplifies it.
        loud = ref > -60
        assert np.abs(ours - ref)[loud].max() < 2e-3
        assert np.median(np.abs(ours - ref)) < 1e-4


def test_the_front_end_matches_the_graphs_own_on_real_recordings(encoder, graph):
    """The soundevents graph computes its log-mel with int8-quantised window and mel weights
    and pads by reflection; hark computes the float one. On the demo clip's windows they
    differ by a fraction of a dB in typical bins; CED's scores move by at most 0.013 and its
    top three classes stay."""
    for wave in windows():
        probs, graph_mel = graph(wave)
        ours = hark_dsp.Frontend(CED_FRONTEND).logmel(wave, RATE)
        inner = slice(2, -2)  # the frames the graph's reflection padding reaches
        diff = np.abs(ours[:, inner] - graph_mel[0][:, inner])
        assert np.median(diff) < 0.05 and np.percentile(diff, 99) < 1.5, (np.median(diff),
                                                                          diff.max())
        with torch.no_grad():
            tokens = encoder.ced(torch.from_numpy(ours)[None])[0]
            ours_probs = torch.sigmoid(encoder.ced.audioset_logits(tokens)).numpy()
        assert np.abs(ours_probs - probs).max() < 0.02
        top = lambda p: set(np.argsort(-p[0])[:3])  # noqa: E731
        assert top(ours_probs) == top(probs)


def test_the_port_matches_the_onnx_graph_from_its_own_log_mel(encoder, graph):
    """Fed the graph's own log-mel, the PyTorch port gives the graph's scores, at several
    lengths (the time position embeddings are sliced to the input)."""
    wave = windows()[0]
    for seconds in (1.0, 4.3, 10.0):
        probs, mel = graph(wave[:int(seconds * RATE)])
        with torch.no_grad():
            tokens = encoder.ced(torch.from_numpy(mel))[0]
            ours = torch.sigmoid(encoder.ced.audioset_logits(tokens)).numpy()
        assert np.abs(ours - probs).max() < 1e-5
    names = class_names()
    assert len(names) == 527 and names[0] == "Speech"
    # Rain, and the hen, in the demo clip's windows.
    probs = graph(windows()[0])[0][0]
    assert "Rain" in {names[i] for i in np.argsort(-probs)[:5]}


def test_the_encoder_lays_each_time_patchs_frequency_tokens_side_by_side(encoder):
    mel = torch.from_numpy(hark_dsp.Frontend(CED_FRONTEND).logmel(windows()[0], RATE))[None]
    with torch.no_grad():
        features = encoder(mel)
        tokens = encoder.ced(mel)[0]  # (1, 4 x 62, 192), frequency-major
    assert features.shape == (1, 62, 768)
    for f in range(4):
        assert torch.equal(features[0, :, 192 * f:192 * (f + 1)], tokens[0, 62 * f:62 * (f + 1)])
    # CED's head from the encoder's features is CED's own.
    with torch.no_grad():
        assert torch.allclose(encoder.audioset(features)[:, 0],
                              torch.sigmoid(encoder.ced.audioset_logits(tokens)))


def test_a_short_window_is_padded_with_silence_to_ten_seconds(encoder):
    mel = torch.from_numpy(hark_dsp.Frontend(CED_FRONTEND).logmel(windows()[0][:RATE], RATE))[None]
    silence = hark_dsp.Frontend(CED_FRONTEND).logmel(np.zeros(RATE, np.float32), RATE)
    assert np.allclose(silence, SILENCE_DB, atol=1e-4)
    with torch.no_grad():
        padded = encoder(mel)
        by_hand = encoder(torch.cat([mel, torch.full((1, 64, 1000 - 101), SILENCE_DB)], 2))
    assert padded.shape == (1, 62, 768) and torch.equal(padded, by_hand)
    # Longer than the 63 patches the position embeddings cover: the first 10.08 s.
    long = torch.randn(1, 64, 1100) * 10 - 40
    with torch.no_grad():
        assert torch.equal(encoder(long), encoder(long[:, :, :1008]))
        assert encoder(long).shape == (1, 63, 768)


def test_ced_mid_adds_block_7_before_the_final_tokens(encoder):
    mid = load_ced("ced-mid")[0]
    mel = torch.from_numpy(hark_dsp.Frontend(CED_FRONTEND).logmel(windows()[-1], RATE))[None]
    with torch.no_grad():
        both, final = mid(mel), encoder(mel)
    assert CED_TAPS["ced-mid"] == (7, DEPTH - 1) and both.shape == (1, 62, 1536)
    assert torch.equal(both[..., 768:], final)
    with pytest.raises(ValueError, match="ending with 11"):
        CEDEncoder(encoder.ced, (3,))


def test_ced_is_a_pretrained_encoder_with_its_audioset_tags(tmp_path):
    cfg = {"encoder": "ced", "vocab_size": 40, "n_tags": 3, "audioset_features": True}
    model = build_model(model_config("pretrained", cfg)).eval()
    assert model.config.n_mels == 64 and model.frontend_overrides["log"] == "clamp"
    assert model.adapt[0].in_features == 768 + 527
    heads = model.tag_heads()
    assert heads[-1]["name"] == "audioset" and len(heads[-1]["labels"]) == 527
    mel = torch.from_numpy(hark_dsp.Frontend(CED_FRONTEND).logmel(windows()[0], RATE))[None]
    with torch.no_grad():
        memory, tags = model.encode_with_tags(mel)
        features = model.encoder(mel)
        # The window's AudioSet scores are CED's own, and the cached path gives the same memory.
        assert torch.allclose(tags[1], model.audioset(features)[:, 0])
        model.from_encoded = True
        assert torch.allclose(model.encode(features.transpose(1, 2)), memory, atol=1e-6)
    assert memory.shape[:2] == (1, 62) and tags[0].shape == (1, 3)


def test_tuned_blocks_train_on_the_cached_output_of_the_frozen_ones():
    model = build_model(model_config("pretrained", {"encoder": "ced", "vocab_size": 40,
                                                     "train_blocks": 2})).eval()
    net = model.encoder.net
    trains = {n.split(".")[2] for n, p in net.named_parameters()
              if p.requires_grad and n.startswith("ced.blocks.")}
    assert trains == {"10", "11"} and net.ced.norm.weight.requires_grad
    assert not net.ced.blocks[9].mlp.fc1.weight.requires_grad
    mel = torch.from_numpy(hark_dsp.Frontend(CED_FRONTEND).logmel(windows()[0], RATE))[None]
    with torch.no_grad():
        memory = model.encode(mel)
        cached = model.encoder.frozen_part(mel)
        model.from_encoded = True
        # What the trainer caches and runs per step gives the memory of the whole encoder.
        assert cached.shape == (1, 62, 768)
        assert torch.allclose(model.encode(cached.transpose(1, 2)), memory, atol=1e-5)
    with pytest.raises(ValueError, match="final block alone"):
        build_model(model_config("pretrained", {"encoder": "ced-mid", "vocab_size": 40,
                                                "train_blocks": 2}))
    with pytest.raises(ValueError, match="without LoRA"):
        build_model(model_config("pretrained", {"encoder": "ced", "vocab_size": 40,
                                                "train_blocks": 2, "lora_rank": 4}))


def test_the_encoder_exports_to_onnx_padding_and_cutting_any_length(encoder, tmp_path):
    path = tmp_path / "ced.onnx"
    torch.onnx.export(encoder, (torch.zeros(1, 64, 300),), path, dynamo=False, opset_version=17,
                      input_names=["mel"], output_names=["features"],
                      dynamic_axes={"mel": {0: "batch", 2: "frames"},
                                    "features": {0: "batch", 1: "steps"}})
    session = ort.InferenceSession(str(path))
    mel = hark_dsp.Frontend(CED_FRONTEND).logmel(windows()[0], RATE)
    for frames in (101, 999, 1001):
        x = np.stack([mel[:, :frames], mel[:, ::-1][:, :frames]]).copy()
        got = session.run(None, {"mel": x})[0]
        with torch.no_grad():
            want = encoder(torch.from_numpy(x)).numpy()
        assert got.shape == (2, 62, 768) and np.abs(got - want).max() < 1e-4
    long = np.concatenate([mel, mel], axis=1)[None].copy()  # 20 s: its first 10.08 s
    got = session.run(None, {"mel": long})[0]
    with torch.no_grad():
        assert np.abs(got - encoder(torch.from_numpy(long)).numpy()).max() < 1e-4
    assert got.shape == (1, 63, 768)


class FeaturesAndEmbedding(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, mel):
        return self.encoder.features_and_embedding(mel)


def test_the_sound_embedding_pools_the_clips_own_patches_of_blocks_8_and_11(encoder, tmp_path):
    mel = hark_dsp.Frontend(CED_FRONTEND).logmel(windows()[0], RATE)
    path = tmp_path / "ced.onnx"
    # Built in eval mode: export leaves the wrapper's mode on the encoder it wraps.
    torch.onnx.export(FeaturesAndEmbedding(encoder).eval(), (torch.zeros(1, 64, 300),), path,
                      dynamo=False, opset_version=17, input_names=["mel"],
                      output_names=["features", "embedding"],
                      dynamic_axes={"mel": {2: "frames"}, "features": {1: "steps"}})
    session = ort.InferenceSession(str(path))
    for frames in (320, 1001):
        x = torch.from_numpy(mel[None, :, :frames].copy())
        with torch.no_grad():
            features, embedding = encoder.features_and_embedding(x)
            tokens = encoder.ced(encoder.padded(x), (8, DEPTH - 1))
        assert torch.equal(features, encoder(x)) and embedding.shape == (1, 384)
        # A 3.2 s clip's 20 patches, not the 42 of silence it is padded with.
        own = frames // 16
        want = torch.cat([CEDEncoder.side_by_side(t)[:, :own].reshape(1, -1, 192).mean(1)
                          for t in tokens], dim=1)
        assert torch.allclose(embedding, want, atol=1e-6)
        got = session.run(["embedding"], {"mel": x.numpy()})[0]
        np.testing.assert_allclose(got, embedding.numpy(), rtol=1e-5, atol=1e-4)  # block 8: ~100
