"""The two graphs of a bundle: the encoder (mel -> memory and initial decoder states) and one
decoder step, exported to ONNX (`torch.onnx.export(dynamo=False, opset_version=17)`; the
encoder then rewritten where tract runs the same computation faster) and traced to TorchScript
for `hark --features tch`; and the int8 / float16 weight variants.
"""

import warnings
from pathlib import Path

import numpy as np
import torch

from hark_export.data import BOS
from hark_export.decode import TorchStepper

OPSET = 17
DYNAMIC_AXES = ("batch", "steps")
TORCHSCRIPT = {"encoder": "encoder.pt", "decoder": "decoder.pt"}
INT8_OPS = ["MatMul", "Gemm", "Gather"]
SOUND_EMBEDDING = "embedding"  # the encoder output learned sounds compare


class ExportRefused(Exception):
    """A gate of the export failed (parity, int8 agreement, the TorchScript twin); the
    message says which numbers and why."""


class EncoderGraph(torch.nn.Module):
    """mel [1, n_mels, frames] -> (memory [1, steps, D], *initial states with batch 1,
    *each tag head's probabilities [1, n_labels], and the sound embedding [1, E] when the
    encoder has one)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, mel):
        memory, tags, embedding = self.model.encode_for_bundle(mel)
        extra = [embedding] if embedding is not None else []
        return (memory, *self.model.init_state(memory), *tags, *extra)


class DecoderGraph(torch.nn.Module):
    """(tokens [batch], memory [batch, steps, D], *states) -> (logits [batch, V], *states)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, memory, *states):
        return tuple(self.model.step(tokens, memory, *states))


def _axes(shape) -> dict:
    """{axis: name} of a declared shape's named (dynamic) axes."""
    return {i: d for i, d in enumerate(shape) if isinstance(d, str)}


def state_entries(model) -> list[dict]:
    """The manifest's [[decoder.states]] for a model, in its `state_specs()` order."""
    entries = []
    for s in model.state_specs():
        unknown = [d for d in s.shape if isinstance(d, str) and d not in DYNAMIC_AXES]
        if unknown:
            raise ValueError(f"state {s.name}: dynamic axis {unknown[0]!r} is not one of "
                             f"{DYNAMIC_AXES}; the daemon knows only those")
        entries.append({"name": s.name, "input": s.name, "output": f"{s.name}_out",
                        "init_output": f"init_{s.name}", "shape": list(s.shape),
                        "batch_axis": s.batch_axis, "dtype": s.dtype})
    return entries


def export_graphs(model, out: Path, n_mels: int, frames: int = 400) -> list[dict]:
    """Writes OUT/encoder.onnx and OUT/decoder.onnx; returns the state entries.

    Traced on a `frames`-long random mel and a decoder batch of 2, with frames, steps and
    batch declared dynamic.
    """
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python values read from tensors: here they are sizes fixed
        # by the config or recorded as dynamic axes, and the parity gate checks the result.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*LSTM can cause an error")  # h0/c0 are inputs
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        return _export_graphs(model, out, n_mels, frames)


def _export_graphs(model, out: Path, n_mels: int, frames: int) -> list[dict]:
    model = model.eval()
    states = state_entries(model)
    mel = torch.randn(1, n_mels, frames, generator=torch.Generator().manual_seed(0))
    memory = model.encode(mel)
    enc_names = (["memory"] + [s["init_output"] for s in states]
                 + [h["output"] for h in model.tag_heads()]
                 + ([SOUND_EMBEDDING] if model.has_sound_embedding else []))
    enc_axes = {"mel": {2: "frames"}, "memory": {1: "steps"}}
    for s in states:  # the encoder's batch is 1: only "steps" stays dynamic
        enc_axes[s["init_output"]] = {i: d for i, d in _axes(s["shape"]).items() if d != "batch"}
    # Wrappers are built in eval mode: export restores the wrapper's mode onto the model.
    torch.onnx.export(EncoderGraph(model).eval(), (mel,), out / "encoder.onnx", dynamo=False,
                      opset_version=OPSET, input_names=["mel"], output_names=enc_names,
                      dynamic_axes=enc_axes)
    speed_up_encoder(out / "encoder.onnx")

    batch = 2
    init = TorchStepper(model, memory).init(batch)
    tokens = torch.full((batch,), BOS, dtype=torch.long)
    dec_in = ["tokens", "memory"] + [s["input"] for s in states]
    dec_out = ["logits"] + [s["output"] for s in states]
    dec_axes = {"tokens": {0: "batch"}, "memory": {0: "batch", 1: "steps"},
                "logits": {0: "batch"}}
    for s in states:
        dec_axes[s["input"]] = dec_axes[s["output"]] = _axes(s["shape"])
    example = (tokens, memory.expand(batch, -1, -1), *init)
    torch.onnx.export(DecoderGraph(model).eval(), example, out / "decoder.onnx", dynamo=False,
                      opset_version=OPSET, input_names=dec_in, output_names=dec_out,
                      dynamic_axes=dec_axes)
    shapes = [["batch"], ["batch", "steps", memory.shape[2]]] + [s["shape"] for s in states]
    keep_unused_inputs(out / "decoder.onnx", dec_in, example, shapes)
    export_torchscript(model, out, mel, example)
    return states


def export_torchscript(model, out: Path, mel, example: tuple, tolerance: float = 1e-4) -> None:
    """Writes OUT/encoder.pt and OUT/decoder.pt: the wrappers traced to TorchScript, with the
    ONNX graphs' inputs and outputs in the same order. Refuses if a traced graph differs from
    the model on other window lengths or batch sizes (a shape frozen by the tracer)."""
    encoder = torch.jit.trace(EncoderGraph(model).eval(), (mel,), check_trace=False)
    decoder = torch.jit.trace(DecoderGraph(model).eval(), example, check_trace=False)
    worst = 0.0
    for frames in (mel.shape[2] // 2 + 7, mel.shape[2] + 123):
        other = torch.randn(1, mel.shape[1], frames, generator=torch.Generator().manual_seed(1))
        outputs = zip(encoder(other), EncoderGraph(model)(other))
        worst = max([worst] + [(a - b).abs().max().item() for a, b in outputs])
        memory = model.encode(other)
        for batch in (1, 3):
            step = (torch.full((batch,), BOS, dtype=torch.long), memory.expand(batch, -1, -1),
                    *TorchStepper(model, memory).init(batch))
            outputs = zip(decoder(*step), DecoderGraph(model)(*step))
            worst = max([worst] + [(a - b).abs().max().item() for a, b in outputs])
    if worst > tolerance:
        raise ExportRefused(f"TorchScript twin differs from the model by {worst:.2e} "
                            f"(> {tolerance}) on other window lengths or batch sizes")
    encoder.save(str(out / TORCHSCRIPT["encoder"]))
    decoder.save(str(out / TORCHSCRIPT["decoder"]))


def keep_unused_inputs(path: Path, names: list[str], example: tuple, shapes: list) -> None:
    """Declares again the inputs the exporter dropped because the graph ignores them (the
    baseline's step never reads the memory), so every graph has the contract's inputs."""
    import onnx
    model = onnx.load(str(path))
    present = {i.name for i in model.graph.input}
    for index, (name, x, shape) in enumerate(zip(names, example, shapes)):
        if name not in present:
            dtype = onnx.helper.np_dtype_to_tensor_dtype(x.numpy().dtype)
            model.graph.input.insert(index, onnx.helper.make_tensor_value_info(name, dtype, shape))
    onnx.save(model, str(path))


# ---- the encoder, rewritten into the same computation in a form tract runs faster ----

def _constant(graph, name: str):
    """The value of `name` if it is an initializer or a Constant node's, or a Cast (a
    `half_weights` graph) or an Identity (a shared weight) of an initializer, else None."""
    from onnx import numpy_helper
    inits = {i.name: i for i in graph.initializer}
    node = next((n for n in graph.node if name in n.output), None)
    if node is not None and node.op_type in ("Cast", "Identity"):
        node, name = None, node.input[0]
    if node is not None and node.op_type == "Constant" and node.attribute[0].name == "value":
        tensor = node.attribute[0].t
    elif name in inits:
        tensor = inits[name]
    else:
        return None
    return numpy_helper.to_array(tensor).astype(np.float32)


def _mel(model, frames: int) -> np.ndarray:
    """A log-mel input for the encoder `model`: `frames` frames of noise around -4 (quiet)."""
    n_mels = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    return np.random.default_rng(frames).normal(-4, 1, (1, n_mels, frames)).astype(np.float32)


def _outputs_at(model, names: list[str], mel: np.ndarray) -> list[np.ndarray]:
    """The values of the tensors `names` in onnxruntime, the encoder run on `mel`."""
    import onnx
    import onnxruntime as ort
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {model.graph.input[0].name: mel})


def _links(graph) -> tuple[dict, dict[str, int]]:
    """The node producing each tensor, and how many node inputs read each tensor."""
    producer = {o: n for n in graph.node for o in n.output}
    readers: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            readers[i] = readers.get(i, 0) + 1
    return producer, readers


def fold_batch_norms(model) -> int:
    """Folds each BatchNormalization that alone reads a Conv with constant weights into that
    Conv's weights and bias (the exporter leaves those behind `_bands_first`'s functional
    convolutions, YAMNet's depthwise ones): one pass less over each activation. Returns how
    many were folded."""
    from onnx import helper, numpy_helper
    graph = model.graph
    producer, readers = _links(graph)
    folded = []
    for bn in graph.node:
        conv = producer.get(bn.input[0]) if bn.op_type == "BatchNormalization" else None
        if conv is None or conv.op_type != "Conv" or readers[bn.input[0]] != 1:
            continue
        w = _constant(graph, conv.input[1])
        params = [_constant(graph, i) for i in bn.input[1:5]]
        bias = _constant(graph, conv.input[2]) if len(conv.input) > 2 else 0.0
        if w is None or any(p is None for p in params) or bias is None:
            continue
        gamma, beta, mean, var = params
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        name = conv.output[0]
        graph.initializer.extend([
            numpy_helper.from_array((w * scale.reshape((-1,) + (1,) * (w.ndim - 1)))
                                    .astype(np.float32), name + "_folded_w"),
            numpy_helper.from_array((beta + (bias - mean) * scale).astype(np.float32),
                                    name + "_folded_b")])
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        folded.append((bn, helper.make_node("Conv", [conv.input[0], name + "_folded_w",
                                                     name + "_folded_b"], [bn.output[0]],
                                            name=conv.name, **attrs), conv))
    replaced = {id(bn): new for bn, new, _ in folded}
    gone = {id(conv) for _, _, conv in folded}
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in gone]
    del graph.node[:]
    graph.node.extend(nodes)
    _prune(graph)
    return len(folded)


def _prune(graph) -> None:
    """Drops the nodes and initializers nothing reads any more."""
    nodes = list(graph.node)
    while True:
        used = {i for n in nodes for i in n.input} | {o.name for o in graph.output}
        live = [n for n in nodes if any(o in used for o in n.output)]
        if len(live) == len(nodes):
            break
        nodes = live
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def polyphase_depthwise(model, min_rows: int = 8) -> int:
    """Rewrites each stride-2 3x3 depthwise convolution of the encoder graph `model` whose input
    (after TF "SAME"'s one zero row and column, a Pad node) has at least `min_rows` rows into
    two convolutions of stride 1 along the last axis (frames): one over the even frames with
    the kernel's even columns, one over the odd frames with its middle column, summed. The
    same multiply-adds, but tract's vectorised depthwise kernel only takes unit strides along
    the innermost axis: on the shipped encoder and a 10 s window (`examples/profile_graph`)
    the depthwise convolutions took 2.3 ms, and 1.1 ms to split the frames, instead of 6.1.
    Layer 12 (4 rows) stays: rewritten as well, tract re-lays the graph around it and YAMNet
    took 17.0 ms instead of 12.6. Returns how many were rewritten."""
    from onnx import helper, numpy_helper
    graph = model.graph
    producer, readers = _links(graph)

    candidates = []
    for conv in graph.node:
        if conv.op_type != "Conv":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        w = _constant(graph, conv.input[1])
        pad = producer.get(conv.input[0])
        if (w is None or w.shape[1:] != (1, 3, 3)
                or attrs.get("group") != w.shape[0] or list(attrs.get("strides", [])) != [2, 2]
                or any(attrs.get("pads", [0])) or any(d != 1 for d in attrs.get("dilations", [1]))
                or pad is None or pad.op_type != "Pad" or readers[conv.input[0]] != 1):
            continue
        candidates.append((conv, pad, w))
    if not candidates:
        return 0
    # What each Pad does, seen on a real run: one zero row and column after, nothing else.
    values = _outputs_at(model, [t for _, p, _ in candidates for t in (p.input[0], p.output[0])],
                         _mel(model, 400))
    chosen = []
    for k, (conv, pad, w) in enumerate(candidates):
        x, padded = values[2 * k], values[2 * k + 1]
        h, wd = x.shape[2:]
        if (padded.shape != x.shape[:2] + (h + 1, wd + 1) or h < min_rows
                or not np.array_equal(padded[:, :, :h, :wd], x)
                or padded[:, :, h].any() or padded[:, :, :, wd].any()):
            continue
        chosen.append((conv, pad, w))

    new_nodes = {}
    for conv, pad, w in chosen:
        base, c = conv.output[0], w.shape[0]
        t = {k: f"{base}_poly_{k}" for k in ("even", "odd", "even_p", "odd_p", "ye", "yo",
                                             "n", "ye_cut", "we", "wo", "pe", "po", "s0", "s1",
                                             "end", "axis", "step")}
        graph.initializer.extend([
            numpy_helper.from_array(np.ascontiguousarray(w[..., 0::2]), t["we"]),
            numpy_helper.from_array(np.ascontiguousarray(w[..., 1:2]), t["wo"]),
            numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), t["pe"]),
            numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 0], np.int64), t["po"]),
            numpy_helper.from_array(np.array([0], np.int64), t["s0"]),
            numpy_helper.from_array(np.array([1], np.int64), t["s1"]),
            numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), t["end"]),
            numpy_helper.from_array(np.array([3], np.int64), t["axis"]),
            numpy_helper.from_array(np.array([2], np.int64), t["step"])])
        bias = list(conv.input[2:3])
        x = pad.input[0]
        new_nodes[id(conv)] = [
            helper.make_node("Slice", [x, t["s0"], t["end"], t["axis"], t["step"]], [t["even"]]),
            helper.make_node("Slice", [x, t["s1"], t["end"], t["axis"], t["step"]], [t["odd"]]),
            helper.make_node("Pad", [t["even"], t["pe"]], [t["even_p"]]),
            helper.make_node("Pad", [t["odd"], t["po"]], [t["odd_p"]]),
            helper.make_node("Conv", [t["even_p"], t["we"]], [t["ye"]], group=c,
                             kernel_shape=[3, 2], strides=[2, 1]),
            helper.make_node("Conv", [t["odd_p"], t["wo"]] + bias, [t["yo"]], group=c,
                             kernel_shape=[3, 1], strides=[2, 1]),
            # Even frames are one more than the output when the frame count is odd.
            helper.make_node("Shape", [t["yo"]], [t["n"]], start=3, end=4),
            helper.make_node("Slice", [t["ye"], t["s0"], t["n"], t["axis"]], [t["ye_cut"]]),
            helper.make_node("Add", [t["ye_cut"], t["yo"]], [base])]
    dropped = {id(p) for _, p, _ in chosen}
    nodes = []
    for n in graph.node:
        if id(n) not in dropped:
            nodes.extend(new_nodes.get(id(n), [n]))
    del graph.node[:]
    graph.node.extend(nodes)
    _prune(graph)  # the Pads' shape arithmetic, the old kernels
    return len(chosen)


def means_as_depthwise(model) -> int:
    """Rewrites each ReduceMean over axis 2 (mel bands) of a 4-d activation into a depthwise
    convolution whose kernel spans that axis with weights 1/bands: the same sum and scale, but
    tract turns a ReduceMean into a sum and a multiply by 1/bands that it runs through ndarray's
    generic element loop (the reduced tensor's strides are not its natural ones): on the shipped
    encoder the three band means of YAMNet's deep features took 0.45 ms of a 13 ms window, the
    convolutions take about 0.05. The band count is read off a real run at two frame counts and
    must be the same. Returns how many were rewritten."""
    from onnx import helper, numpy_helper
    graph = model.graph
    candidates = [n for n in graph.node if n.op_type == "ReduceMean" and len(n.input) == 1
                  and list(next((helper.get_attribute_value(a) for a in n.attribute
                                 if a.name == "axes"), [])) == [2]]
    if not candidates:
        return 0
    shapes = [[v.shape for v in _outputs_at(model, [n.input[0] for n in candidates],
                                            _mel(model, frames))]
              for frames in (95, 400)]
    new_nodes = {}
    for node, short, long in zip(candidates, *shapes):
        if len(short) != 4 or short[:3] != long[:3]:
            continue
        _, channels, bands, _ = short
        keep = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        base = node.output[0]
        graph.initializer.append(numpy_helper.from_array(
            np.full((channels, 1, bands, 1), 1.0 / bands, np.float32), base + "_mean_w"))
        conv = helper.make_node("Conv", [node.input[0], base + "_mean_w"],
                                [base if keep else base + "_mean"], group=channels,
                                kernel_shape=[bands, 1])
        new_nodes[id(node)] = [conv]
        if not keep:
            graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64),
                                                             base + "_mean_axis"))
            new_nodes[id(node)].append(
                helper.make_node("Squeeze", [base + "_mean", base + "_mean_axis"], [base]))
    nodes = [m for n in graph.node for m in new_nodes.get(id(n), [n])]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(new_nodes)


def slices_before_pools(model) -> int:
    """Moves a Slice that keeps some channels of a `Transpose -> AveragePool -> Transpose back`
    chain to the chain's start, so the pool averages only the channels kept: YAMNet's AudioSet
    head takes the last 1,024 of the 2,560 deep-feature channels, which were all pooled over
    frames first (0.31 ms of a 10 s window in tract, 0.12 after). Only constant slices along
    one axis that the pool does not pool, each node of the chain read by the next alone.
    Returns how many were moved."""
    from onnx import helper
    graph = model.graph
    producer, readers = _links(graph)
    moved = 0
    for sl in graph.node:
        if sl.op_type != "Slice" or len(sl.input) < 4:
            continue
        back = producer.get(sl.input[0])
        pool = producer.get(back.input[0]) if back is not None else None
        there = producer.get(pool.input[0]) if pool is not None else None
        if (back is None or pool is None or there is None or back.op_type != "Transpose"
                or pool.op_type != "AveragePool" or there.op_type != "Transpose"
                or any(readers[n.output[0]] != 1 for n in (there, pool, back))):
            continue
        perm = list(helper.get_attribute_value(there.attribute[0]))
        inverse = list(helper.get_attribute_value(back.attribute[0]))
        axes = _constant(graph, sl.input[3])
        if ([perm[i] for i in inverse] != list(range(len(perm))) or axes is None
                or len(axes) != 1 or len(sl.input) > 4 and _constant(graph, sl.input[4]) is None):
            continue
        axis = int(axes[0]) % len(perm)
        if perm.index(axis) != 1:  # the pooled tensor's channel axis: pools run over 2 and on
            continue
        # slice(x) -> transpose -> pool -> transpose back, the Slice's output name kept.
        sliced = sl.output[0] + "_early"
        sl.input[0] = there.input[0]
        sl.output[0], out = sliced, sl.output[0]
        there.input[0] = sliced
        back.output[0] = out
        moved += 1
    if moved:
        # Each Slice now runs before the chain it was after: put the graph back in order.
        producer, _ = _links(graph)
        order, seen = [], set()

        def visit(node):
            if id(node) in seen:
                return
            seen.add(id(node))
            for i in node.input:
                if i in producer:
                    visit(producer[i])
            order.append(node)
        for n in list(graph.node):
            visit(n)
        del graph.node[:]
        graph.node.extend(order)
    return moved


def speed_up_encoder(path: Path, tolerance: float = 1e-4) -> dict:
    """Rewrites the encoder graph at `path` into the same computation in a form tract runs
    faster (`fold_batch_norms`, `polyphase_depthwise`, `means_as_depthwise`,
    `slices_before_pools`); any graph without those patterns is left as it is. Refuses
    (ExportRefused, the file untouched) unless onnxruntime gives the same outputs within
    `tolerance` at even and odd frame counts. Returns the counts and the
    largest difference seen."""
    import onnx
    model = onnx.load(str(path))
    done = {"batch_norms_folded": fold_batch_norms(model),
            "depthwise_polyphase": polyphase_depthwise(model),
            "means_as_depthwise": means_as_depthwise(model),
            "slices_before_pools": slices_before_pools(model)}
    if not any(done.values()):
        return done
    original = onnx.load(str(path))
    outputs = [o.name for o in model.graph.output]
    worst = 0.0
    for frames in (95, 192, 999, 1000):
        m = _mel(model, frames)
        for a, b in zip(_outputs_at(original, outputs, m), _outputs_at(model, outputs, m)):
            worst = max(worst, float(np.abs(a - b).max()))
    if worst > tolerance:
        raise ExportRefused(f"{path.name}: the rewritten encoder differs from the exported "
                            f"one by {worst:.2e} (> {tolerance})")
    onnx.save(model, str(path))
    return {**done, "max_abs_diff": worst}


# ---- int8 and float16 weights ----

# Which input of an op is its weight, and the axis of that weight's output channels.
_WEIGHT = {"MatMul": (1, -1), "Gather": (0, 0)}


def _rewrite_weights(path: Path, weights_of, store) -> None:
    """Stores float32 initializers of the graph at `path` in another form, each behind a node
    that turns it back into float32: `weights_of(node)` yields (input index, argument) for the
    inputs of `node` to rewrite; `store(name, array, argument)` returns the new initializers
    and the node that computes `name + "_f32"` from them. An initializer read by several nodes
    is rewritten once. The new nodes read initializers only, so they go first."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    done, nodes = set(), []
    for node in graph.node:
        for k, argument in weights_of(node):
            name = node.input[k] if k < len(node.input) else ""
            init = inits.get(name)
            if init is None or init.data_type != onnx.TensorProto.FLOAT:
                continue
            if name not in done:
                stored, decode = store(name, numpy_helper.to_array(init), argument)
                if decode is None:
                    continue
                graph.initializer.remove(init)
                graph.initializer.extend(stored)
                nodes.append(decode)
                done.add(name)
            node.input[k] = name + "_f32"
    for n in reversed(nodes):
        graph.node.insert(0, n)
    onnx.save(model, str(path))


def int8_weights(path: Path, op_types: list[str]) -> None:
    """Stores the float32 weights of `op_types` nodes as int8, one symmetric scale per output
    channel, each followed by a DequantizeLinear back to float32. A quarter of the bytes,
    and as with `half_weights` the runtimes fold the DequantizeLinear into a float32 constant
    when they load the graph: arithmetic stays float32, so int8 costs no speed (tract's
    dynamically quantized matmuls are slower than its float32 ones on these shapes) and only
    the weights' rounding, not the activations', moves what the model says."""
    import onnx
    from onnx import numpy_helper

    def weights_of(node):
        if node.op_type not in op_types:
            return []
        if node.op_type == "Gemm":
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            return [(1, 0 if trans_b else 1)]
        return [_WEIGHT[node.op_type]] if node.op_type in _WEIGHT else []

    def store(name, w, axis):
        if w.ndim != 2:
            return [], None
        axis = axis % w.ndim
        peak = np.abs(w).max(axis=1 - axis)
        scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
        shape = [1, 1]
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        stored = [numpy_helper.from_array(q, name + "_int8"),
                  numpy_helper.from_array(scale, name + "_scale"),
                  numpy_helper.from_array(np.zeros_like(scale, np.int8), name + "_zero")]
        return stored, onnx.helper.make_node(
            "DequantizeLinear", [name + "_int8", name + "_scale", name + "_zero"],
            [name + "_f32"], axis=axis, name=name + "_dequantize")

    _rewrite_weights(path, weights_of, store)


def half_weights(path: Path, op_types: list[str]) -> None:
    """Stores the float32 weights (initializer inputs) of `op_types` nodes as float16, each
    followed by a Cast back to float32: half the bytes, and the runtimes fold the Cast into a
    float32 constant when they load the graph, so arithmetic stays float32. Where int8 moves
    what a CNN says (YAMNet's pointwise convolutions: per-tensor int8 changed the greedy
    caption of over half the test scenes), float16 weights change it almost never."""
    import onnx
    from onnx import numpy_helper

    def weights_of(node):
        return [(k, None) for k in range(len(node.input))] if node.op_type in op_types else []

    def store(name, w, _):
        half = numpy_helper.from_array(w.astype("float16"), name + "_fp16")
        return [half], onnx.helper.make_node("Cast", [half.name], [name + "_f32"],
                                             to=onnx.TensorProto.FLOAT, name=name + "_cast")

    _rewrite_weights(path, weights_of, store)
