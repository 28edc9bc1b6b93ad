"""The two graphs of a bundle: the encoder (mel -> memory and initial decoder states) and one
decoder step, exported to ONNX (`torch.onnx.export(dynamo=False, opset_version=17)`) and traced
to TorchScript for `hark --features tch`; and the int8 / float16 weight variants.
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


class ExportRefused(Exception):
    """A gate of the export failed (parity, int8 agreement, the TorchScript twin); the
    message says which numbers and why."""


class EncoderGraph(torch.nn.Module):
    """mel [1, n_mels, frames] -> (memory [1, steps, D], *initial states with batch 1,
    *each tag head's probabilities [1, n_labels])."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, mel):
        memory, tags = self.model.encode_with_tags(mel)
        return (memory, *self.model.init_state(memory), *tags)


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
                 + [h["output"] for h in model.tag_heads()])
    enc_axes = {"mel": {2: "frames"}, "memory": {1: "steps"}}
    for s in states:  # the encoder's batch is 1: only "steps" stays dynamic
        enc_axes[s["init_output"]] = {i: d for i, d in _axes(s["shape"]).items() if d != "batch"}
    # Wrappers are built in eval mode: export restores the wrapper's mode onto the model.
    torch.onnx.export(EncoderGraph(model).eval(), (mel,), out / "encoder.onnx", dynamo=False,
                      opset_version=OPSET, input_names=["mel"], output_names=enc_names,
                      dynamic_axes=enc_axes)

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
