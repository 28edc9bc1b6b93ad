"""hark-export: every architecture round-trips through onnxruntime behind the parity gate, the
int8 variant is gated on agreement, and the validator refuses bad bundles as the daemon does."""

import os
from pathlib import Path
import shutil
import tomllib

import numpy as np
import pytest
import torch

from hark_export.bundle import (MANIFEST, BundleError, BundleInfo, OnnxModel, quantize, to_toml,
                                validate_bundle, write_bundle, write_manifest)
from hark_export.config import model_config, tiny
from hark_export.data import SPECIALS, Vocab, features, load_split
from hark_export.decode import SPECIAL, DecodeParams, TorchStepper, decode
from hark_export.gates import (Agreement, agreement, check_int8, check_parity, greedy_tokens,
                               parity)
from hark_export.graphs import EncoderGraph, ExportRefused, speed_up_encoder
from hark_export.model import build_model

TINY = tiny(layers=2)
VOCAB = Vocab(list(SPECIALS) + [f"w{i}" for i in range(36)])
FRONTEND = {"norm_mean": -6.5, "norm_std": 3.25}


def _model(arch):
    torch.manual_seed(0)
    model = build_model(model_config(arch, {"vocab_size": len(VOCAB), **TINY[arch]})).eval()
    with torch.no_grad():  # make <eos> likely enough that captions end at varied lengths
        model.head.bias[2] += 1.5
    return model


def _export(arch, out):
    info = BundleInfo(f"tiny-{arch}", arch, "MIT", "none", 4.0, 2.0,
                      DecodeParams(strategy="beam", beam_size=3, alternatives=2, max_len=29))
    model = _model(arch)
    write_bundle(out, model, VOCAB, FRONTEND, info, metrics={"bleu_4": 0.5})
    return model


@pytest.fixture(scope="module")
def mels(tiny_synth):
    """Normalised features of the tiny synthetic test and validation clips, from the dsp."""
    import hark_dsp
    frontend = dict(hark_dsp.Frontend(FRONTEND).config)
    clips = load_split(tiny_synth, "test") + load_split(tiny_synth, "val")
    return [features(c.audio, frontend) for c in clips]


@pytest.fixture(scope="module")
def baseline_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "baseline"
    _export("baseline", out)
    return out


@pytest.mark.parametrize("arch", list(TINY))
def test_each_architecture_exports_a_bundle_that_passes_the_parity_gate(arch, mels, tmp_path):
    model = _export(arch, tmp_path / arch)
    manifest = validate_bundle(tmp_path / arch)
    assert manifest["architecture"] == arch and manifest["metrics"] == {"bleu_4": 0.5}
    onnx_model = OnnxModel(tmp_path / arch)
    p = parity(model, onnx_model, mels)
    check_parity(p)
    assert p.max_abs_diff <= 1e-4 and p.captions_equal == len(mels)
    # Beam search runs the decoder with batch 3 and reorders every state.
    beam = DecodeParams(strategy="beam", beam_size=3, alternatives=2, max_len=29)
    for mel in mels[:2]:
        memory = model.encode(torch.from_numpy(mel)[None]).detach()
        expected = [h.tokens for h in decode(TorchStepper(model, memory), SPECIAL, beam)]
        assert [h.tokens for h in onnx_model.decode(mel)] == expected
        # The TorchScript twin (the tch backend's graphs) computes the same.
        x = torch.from_numpy(mel)[None]
        traced = torch.jit.load(str(tmp_path / arch / "encoder.pt"))(x)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(traced, EncoderGraph(model)(x)))


@pytest.mark.parametrize("mode", ["weights", "dynamic"])
@pytest.mark.parametrize("arch", ["attention", "transformer"])
def test_int8_bundles_quantize_only_matmul_gemm_gather_and_still_validate(arch, mode, mels,
                                                                        tmp_path):
    import onnx
    from onnx import numpy_helper
    _export(arch, tmp_path / "fp32")
    quantize(tmp_path / "fp32", tmp_path / "int8", mode=mode)
    m8 = validate_bundle(tmp_path / "int8")
    # The fp32 TorchScript twin is not the int8 model: left out.
    assert "torchscript" not in m8 and not list((tmp_path / "int8").glob("*.pt"))
    graphs = [onnx.load(str(tmp_path / "int8" / f)) for f in ("encoder.onnx", "decoder.onnx")]
    ops = {n.op_type for g in graphs for n in g.graph.node}
    assert not any(o.startswith("DynamicQuantizeLSTM") for o in ops)
    if mode == "dynamic":
        assert "MatMulInteger" in ops
    else:
        # int8 storage, float32 arithmetic: every MatMul/Gemm/Gather weight is dequantized
        # from an int8 initializer, one scale per output channel, and nothing runs in int8.
        assert "MatMulInteger" not in ops and "DequantizeLinear" in ops
        for g in graphs:
            inits = {i.name: i for i in g.graph.initializer}
            for n in g.graph.node:
                if n.op_type == "DequantizeLinear":
                    q, scale = (numpy_helper.to_array(inits[x]) for x in n.input[:2])
                    assert q.dtype == np.int8 and scale.shape == (q.shape[n.attribute[0].i],)
                elif n.op_type in ("MatMul", "Gemm", "Gather"):
                    assert not any(x in inits and inits[x].data_type == onnx.TensorProto.FLOAT
                                   and len(inits[x].dims) == 2 for x in n.input)
    a = agreement(greedy_tokens(OnnxModel(tmp_path / "int8"), mels),
                  greedy_tokens(OnnxModel(tmp_path / "fp32"), mels))
    # Measured 1.0 / 1.0 for both architectures: int8 rounding must not change these captions.
    assert a.clips == len(mels) and a.exact >= 5 / 6 and a.tokens >= 0.9
    size = {d: sum(f.stat().st_size for f in (tmp_path / d).glob("*.onnx")) for d in ("fp32", "int8")}
    assert size["int8"] < size["fp32"]


def test_the_encoder_rewrite_folds_a_batch_norm_after_a_1d_convolution(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 64, 3)).astype(np.float32)
    gamma, beta, mean = (rng.normal(size=8).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2, 8).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["mel", "w"], ["c"], pads=[1, 1]),
         helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["memory"])],
        "conv1d_bn", [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, 64, "frames"])],
        [helper.make_tensor_value_info("memory", TensorProto.FLOAT, [1, 8, "frames"])],
        [numpy_helper.from_array(a, n) for a, n in
         [(w, "w"), (gamma, "g"), (beta, "b"), (mean, "m"), (var, "v")]])
    path = tmp_path / "encoder.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(path))
    mel = rng.normal(-4, 1, (1, 64, 50)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"mel": mel})[0]
    done = speed_up_encoder(path)
    assert (done["batch_norms_folded"], done["depthwise_polyphase"]) == (1, 0)
    assert [n.op_type for n in onnx.load(str(path)).graph.node] == ["Conv"]
    got = ort.InferenceSession(str(path)).run(None, {"mel": mel})[0]
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("keepdims", [0, 1])
def test_the_encoder_rewrite_turns_a_band_mean_into_a_depthwise_convolution(tmp_path, keepdims):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 1, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Unsqueeze", ["mel", "one"], ["x"]),
         helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[4, 1]),
         helper.make_node("ReduceMean", ["c"], ["memory"], axes=[2], keepdims=keepdims)],
        "band_mean", [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, 64, "frames"])],
        [helper.make_tensor_value_info("memory", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1]), "one")])
    path = tmp_path / "encoder.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(path))
    mel = rng.normal(-4, 1, (1, 64, 77)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"mel": mel})[0]
    assert speed_up_encoder(path)["means_as_depthwise"] == 1
    nodes = onnx.load(str(path)).graph.node
    assert "ReduceMean" not in [n.op_type for n in nodes]
    mean = next(n for n in nodes if n.op_type == "Conv" and n.input[0] == "c")
    assert helper.get_attribute_value(mean.attribute[0]) == 8  # one group per channel
    got = ort.InferenceSession(str(path)).run(None, {"mel": mel})[0]
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-5


def test_the_encoder_rewrite_slices_channels_before_pooling_them(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    const = [numpy_helper.from_array(np.array(v), n) for v, n in
             [([-16], "start"), ([2**62], "end")]]
    graph = helper.make_graph(
        [helper.make_node("Transpose", ["mel"], ["x"], perm=[0, 2, 1]),
         helper.make_node("Relu", ["x"], ["features"]),  # [1, frames, 64], as YAMNet's concat
         helper.make_node("Transpose", ["features"], ["t"], perm=[0, 2, 1]),
         helper.make_node("AveragePool", ["t"], ["p"], kernel_shape=[3], pads=[1, 1],
                          count_include_pad=0),
         helper.make_node("Transpose", ["p"], ["back"], perm=[0, 2, 1]),
         helper.make_node("Constant", [], ["axes"],
                          value=numpy_helper.from_array(np.array([2]), "axes")),
         helper.make_node("Slice", ["back", "start", "end", "axes"], ["memory"])],
        "head", [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, 64, "frames"])],
        [helper.make_tensor_value_info("memory", TensorProto.FLOAT, None)], const)
    path = tmp_path / "encoder.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(path))
    mel = np.random.default_rng(0).normal(-4, 1, (1, 64, 31)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"mel": mel})[0]
    assert speed_up_encoder(path)["slices_before_pools"] == 1
    order = [n.op_type for n in onnx.load(str(path)).graph.node if n.op_type != "Constant"]
    assert order.index("Slice") < order.index("AveragePool")
    got = ort.InferenceSession(str(path)).run(None, {"mel": mel})[0]
    assert got.shape == want.shape == (1, 31, 16) and np.array_equal(got, want)


def test_the_parity_gate_refuses_graphs_that_do_not_compute_the_model(baseline_bundle, mels):
    model = _model("baseline")
    with torch.no_grad():
        model.head.weight.mul_(1.01)
    with pytest.raises(ExportRefused, match="parity gate: .* max \\|diff\\|"):
        check_parity(parity(model, OnnxModel(baseline_bundle), mels[:2]))


def test_the_int8_gate_refuses_below_80_percent_exact_agreement_and_says_why():
    # Positions compared include the end token: 4 5 <eos> | 6 <eos> vs 4 5 <eos> | 7 <eos>.
    assert agreement([[4, 5], [6]], [[4, 5], [7]]) == Agreement(2, 0.5, 0.8)
    check_int8(Agreement(10, 0.8, 0.9))
    with pytest.raises(ExportRefused, match=r"int8 gate: .* 70.0% of 10 clips .* required 80%"):
        check_int8(Agreement(10, 0.7, 0.95))


def test_the_manifest_declares_frontend_normalisation_tokens_states_and_hashes(baseline_bundle):
    m = tomllib.loads((baseline_bundle / MANIFEST).read_text())
    assert m["frontend"]["norm_mean"] == -6.5 and m["frontend"]["n_mels"] == 64
    assert (m["tokens"]["pad"], m["tokens"]["bos"], m["tokens"]["eos"]) == (0, 1, 2)
    assert m["tokens"]["max_len"] == 29 and m["decoding"]["strategy"] == "beam"
    assert [s["name"] for s in m["decoder"]["states"]] == ["h", "c"]
    assert m["decoder"]["states"][0]["shape"] == [1, "batch", 64]
    assert set(m["files"]) == {"encoder.onnx", "decoder.onnx", "encoder.pt", "decoder.pt",
                               "vocab.txt", "MODEL_CARD.md"}
    assert m["torchscript"] == {"encoder": "encoder.pt", "decoder": "decoder.pt"}
    assert "bleu_4" in (baseline_bundle / "MODEL_CARD.md").read_text()


def test_toml_writer_round_trips_nested_tables_arrays_of_tables_and_quoted_keys():
    doc = {"a": 1, "b": "x \"y\"", "t": {"f": 1e-6, "l": [2, "batch", 3],
                                          "rows": [{"n": 1}, {"n": 2}]}, "files": {"a.b": "h"}}
    assert tomllib.loads(to_toml(doc)) == doc


def _copy(src, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(src, dst)
    return dst


def _edit(bundle, old, new):
    path = bundle / MANIFEST
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _rehash(bundle):
    write_manifest(bundle, tomllib.loads((bundle / MANIFEST).read_text()))


def test_validator_reports_a_missing_manifest(baseline_bundle, tmp_path):
    b = _copy(baseline_bundle, tmp_path)
    (b / MANIFEST).unlink()
    with pytest.raises(BundleError, match="hark-model.toml: cannot read"):
        validate_bundle(b)


def test_validator_reports_a_corrupted_manifest(baseline_bundle, tmp_path):
    b = _copy(baseline_bundle, tmp_path)
    _edit(b, "[encoder]", "[encoder")
    with pytest.raises(BundleError, match="not valid TOML"):
        validate_bundle(b)


def test_validator_reports_missing_and_unknown_keys(baseline_bundle, tmp_path):
    b = _copy(baseline_bundle, tmp_path)
    _edit(b, 'logits = "logits"', 'logitz = "logits"')
    with pytest.raises(BundleError, match="missing key decoder.logits"):
        validate_bundle(b)
    _edit(b, 'logitz = "logits"', 'logits = "logits"\ncolour = "red"')
    with pytest.raises(BundleError, match="unknown key decoder.colour"):
        validate_bundle(b)


def test_validator_reports_a_missing_file(baseline_bundle, tmp_path):
    b = _copy(baseline_bundle, tmp_path)
    (b / "decoder.onnx").unlink()
    with pytest.raises(BundleError, match='decoder.file = "decoder.onnx", but the bundle has no such file'):
        validate_bundle(b)


def test_validator_refuses_files_outside_the_bundle(baseline_bundle, tmp_path):
    for i, outside in enumerate(["../../etc/hostname", "/etc/hostname"]):
        b = _copy(baseline_bundle, tmp_path / str(i))
        _edit(b, 'vocab = "vocab.txt"', f'vocab = "{outside}"')
        with pytest.raises(BundleError, match="tokens.vocab = .*inside the bundle's folder"):
            validate_bundle(b)


def test_validator_reports_a_hash_mismatch(baseline_bundle, tmp_path):
    b = _copy(baseline_bundle, tmp_path)
    with open(b / "vocab.txt", "a") as f:
        f.write("extra\n")
    with pytest.raises(BundleError, match="vocab.txt: sha256 is .* but \\[files\\]"):
        validate_bundle(b)


def test_validator_reports_token_ids_frontend_and_batch_axis_errors(baseline_bundle, tmp_path):
    b = _copy(baseline_bundle, tmp_path)
    _edit(b, "eos = 2", "eos = 99")
    with pytest.raises(BundleError, match="tokens.eos: id 99 is outside the vocabulary"):
        validate_bundle(b)
    _edit(b, "eos = 99", "eos = 2")
    _edit(b, "n_mels = 64", "n_mels = 0")
    with pytest.raises(BundleError, match="frontend"):
        validate_bundle(b)
    _edit(b, "n_mels = 0", "n_mels = 64")
    _edit(b, "batch_axis = 1", "batch_axis = 0")
    with pytest.raises(BundleError, match=r"decoder.states\[0\] \(h\): batch_axis = 0"):
        validate_bundle(b)


def test_validator_reports_graphs_that_disagree_with_the_declarations(baseline_bundle, tmp_path):
    b = _copy(baseline_bundle, tmp_path)
    _edit(b, 'output = "h_out"', 'output = "hidden_out"')
    with pytest.raises(BundleError, match='decoder.onnx: has no output "hidden_out"'):
        validate_bundle(b)
    _edit(b, 'output = "hidden_out"', 'output = "h_out"')
    _edit(b, 'shape = [1, "batch", 64]', 'shape = [1, "batch", 65]')
    with pytest.raises(BundleError, match=r'"init_h" \(initial h\) is float32 \[1, 1, 64\]'):
        validate_bundle(b)
    _edit(b, 'shape = [1, "batch", 65]', 'shape = [1, "batch", 64]')
    (b / "vocab.txt").write_text("\n".join(VOCAB.itos[:-1]) + "\n")
    _rehash(b)
    with pytest.raises(BundleError, match="has 40 values per hypothesis but vocab.txt has 39"):
        validate_bundle(b)


def test_hark_export_writes_evaluated_bundles_and_refuses_an_int8_below_the_gate(tiny_synth,
                                                                                 tmp_path, capsys):
    from hark_export.config import TrainConfig
    from hark_export.export import main
    from hark_export.train import train
    run = tmp_path / "run"
    train(TrainConfig(data=str(tiny_synth), out=str(run), arch="attention", epochs=1,
                      cache=str(tmp_path / "cache"), batch_size=8, evaluate_test=False,
                      model=TINY["attention"]))
    out = tmp_path / "bundles" / "tiny"
    # No int8 model can agree on more than 100 % of the captions: the gate must refuse.
    with pytest.raises(SystemExit, match=r"hark-export refuses: int8 gate: .* required 101%"):
        main([str(run), "--out", str(out), "--min-int8-agreement", "1.01"])
    assert not (tmp_path / "bundles" / "tiny-int8").exists()
    m = validate_bundle(out)
    assert m["name"] == "synth-attention" and m["window"]["seconds"] == 4.01
    assert {"bleu_4", "meteor", "cider_d", "sbert_sim", "distinct_1", "parity_max_abs_diff",
            "int8_exact_agreement"} <= set(m["metrics"])
    assert "parity: max |onnx - torch|" in capsys.readouterr().out

    main([str(run), "--out", str(out), "--min-int8-agreement", "0"])
    m8 = validate_bundle(tmp_path / "bundles" / "tiny-int8")
    assert m8["name"] == "synth-attention-int8"
    assert m8["metrics"]["onnx_megabytes"] < validate_bundle(out)["metrics"]["onnx_megabytes"]


def test_a_yamnet_model_exports_its_tag_heads_and_the_validator_reads_them(tmp_path):
    """The pretrained model with a hark tag head: the bundle declares [[tags]] for it and for
    YAMNet's AudioSet head, with labels files; the graphs output probabilities that equal
    PyTorch's, and a wrong labels count is refused."""
    import hark_dsp
    import numpy as np

    from hark_export.yamnet import YAMNET_FRONTEND
    torch.manual_seed(0)
    model = build_model(model_config("pretrained", {
        "vocab_size": len(VOCAB), "n_tags": 3, "d_model": 32, "attn_dim": 32, "embed": 32,
        "hidden": 64})).eval()
    model.tag_labels = ["dog", "rain", "speech"]
    info = BundleInfo("tiny-yamnet", "pretrained", "MIT + Apache-2.0 (YAMNet)", "none", 3.0,
                      1.5, DecodeParams(max_len=20))
    out = tmp_path / "yamnet"
    write_bundle(out, model, VOCAB, dict(hark_dsp.Frontend(YAMNET_FRONTEND).config), info)
    manifest = validate_bundle(out)
    heads = manifest["tags"]
    assert [(h["name"], h["output"]) for h in heads] == [("hark", "tags"), ("audioset", "audioset")]
    assert (out / "labels.txt").read_text().split() == ["dog", "rain", "speech"]
    assert len((out / "audioset_labels.txt").read_text().splitlines()) == 521
    mel = np.random.default_rng(0).normal(-4, 2, (64, 300)).astype(np.float32)
    onnx_tags = OnnxModel(out).encoder.run(["tags", "audioset"], {"mel": mel[None]})
    with torch.no_grad():
        _, torch_tags = model.encode_with_tags(torch.from_numpy(mel)[None])
    for a, b in zip(onnx_tags, torch_tags):
        assert a.shape == tuple(b.shape) and ((0 <= a) & (a <= 1)).all()
        assert np.abs(a - b.numpy()).max() < 1e-4
    (out / "labels.txt").write_text("dog\nrain\n")
    write_manifest(out, tomllib.loads((out / MANIFEST).read_text()))
    with pytest.raises(BundleError, match="labels"):
        validate_bundle(out)


def test_hark_check_bundle_judges_and_refuses_what_the_daemon_refuses(tmp_path):
    hark = _hark_binary()
    from hark_export.gates import hark_judges
    _export("attention", tmp_path / "b")
    assert ": ok: " in hark_judges(tmp_path / "b", hark)
    manifest = tomllib.loads((tmp_path / "b" / MANIFEST).read_text())
    manifest["decoding"]["max_len"] = manifest["tokens"]["max_len"] + 5
    write_manifest(tmp_path / "b", manifest)
    with pytest.raises(ExportRefused, match="decoding.max_len"):
        hark_judges(tmp_path / "b", hark)
    with pytest.raises(ExportRefused, match="no hark binary"):
        hark_judges(tmp_path / "b", tmp_path / "missing")


def _hark_binary():
    from hark_export.evaluate import HARK
    path = Path(os.environ.get("HARK", HARK))
    if not path.is_file():
        pytest.skip("the hark binary is not built (CI builds it first and fails on this skip)")
    return path


def _apply(bundle: Path, edit: dict) -> None:
    """One edit of the shared defect corpus (tests/bundle-defects.toml), as the Rust suite
    applies it."""
    if "remove" in edit:
        (bundle / edit["remove"]).unlink()
        return
    if "rehash" in edit:
        m = tomllib.loads((bundle / MANIFEST).read_text())
        write_manifest(bundle, m)  # rewrites every [files] sha256
        return
    path = bundle / edit["file"]
    if edit.get("flip_last_byte"):
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        return
    text = path.read_text()
    if "replace" in edit:
        new = text.replace(edit["replace"], edit["with"], 1)
    elif "line_starting" in edit:
        lines = text.split("\n")
        start = lines.index(edit["after"]) if "after" in edit else 0
        i = next(k for k in range(start, len(lines)) if lines[k].startswith(edit["line_starting"]))
        lines[i] = edit["with"]
        new = "\n".join(lines)
    else:
        new = text + edit["append"]
    assert new != text, edit
    path.write_text(new)


def test_every_defect_of_the_shared_corpus_is_refused_by_the_trainer_and_the_daemon(tmp_path):
    hark = _hark_binary()
    from hark_export.gates import hark_judges
    corpus = tomllib.loads((Path(__file__).parents[2] / "tests" / "bundle-defects.toml")
                           .read_text())["defect"]
    _export("baseline", tmp_path / "good")
    for defect in corpus:
        bundle = tmp_path / "bad"
        shutil.rmtree(bundle, ignore_errors=True)
        shutil.copytree(tmp_path / "good", bundle)
        for edit in defect["edits"]:
            _apply(bundle, edit)
        try:
            validate_bundle(bundle)
        except BundleError:
            pass
        else:
            pytest.fail(f"{defect['name']}: the trainer's validate_bundle accepted it")
        with pytest.raises(ExportRefused) as refused:
            hark_judges(bundle, hark)
        for part in defect["daemon"]:
            assert part in str(refused.value), (defect["name"], part, str(refused.value))
