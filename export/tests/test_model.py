import math

import pytest
import torch

from hark_export.config import model_config
from hark_export.data import BOS, EOS
from hark_export.model import build_model, count_parameters, greedy_decode

ARCHS = ["baseline", "improved", "attention", "transformer"]


def _model(arch, **overrides):
    torch.manual_seed(0)
    return build_model(model_config(arch, {"vocab_size": 40, **overrides})).eval()


def _mel(model, frames=120, batch=3):
    return torch.randn(batch, model.config.n_mels, frames)


@pytest.mark.parametrize("arch", ARCHS + ["pretrained"])
def test_step_by_step_decoding_equals_the_teacher_forced_forward(arch):
    model = _model(arch, **({"lora_rank": 4} if arch == "pretrained" else {}))
    mel = _mel(model, frames=96)
    tokens = torch.cat([torch.full((3, 1), BOS), torch.randint(4, 40, (3, 11))], dim=1)
    with torch.no_grad():
        memory = model.encode(mel)
        full = model.decode(memory, tokens)  # (B, L, V)
        states = model.init_state(memory)
        for t in range(tokens.shape[1]):
            logits, *states = model.step(tokens[:, t], memory, *states)
            torch.testing.assert_close(logits, full[:, t], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_encoder_keeps_the_time_axis(arch):
    model = _model(arch)
    pool = math.prod(model.config.time_pool)
    assert pool <= 8  # memory frames of at most 80 ms: beeps 200 ms apart stay countable
    assert model.encode(_mel(model, frames=200)).shape[1] == 200 // pool
    assert model.encode(_mel(model, frames=400)).shape[1] == 400 // pool


@pytest.mark.parametrize("arch", ARCHS + ["pretrained"])
def test_state_declarations_match_the_initial_states(arch):
    model = _model(arch)
    memory = model.encode(_mel(model, frames=64, batch=2))
    states = model.init_state(memory)
    specs = model.state_specs()
    assert len(states) == len(specs) and len({s.name for s in specs}) == len(specs)
    sizes = {"batch": 2, "steps": memory.shape[1]}
    for spec, state in zip(specs, states):
        assert tuple(state.shape) == tuple(sizes.get(d, d) for d in spec.shape)
        assert spec.shape[spec.batch_axis] == "batch" and spec.init in ("zeros", "memory")
        assert str(state.dtype) == f"torch.{spec.dtype}"
        if spec.init == "zeros":
            assert not state.any()


def test_default_sizes_are_near_the_seed_parameter_counts_at_a_4400_word_vocabulary():
    counts = {a: count_parameters(build_model(model_config(a))) for a in ARCHS}
    for arch, target in {"baseline": 3.5e6, "improved": 15e6, "attention": 8e6,
                         "transformer": 8.5e6}.items():
        assert abs(counts[arch] - target) / target < 0.1, (arch, counts[arch])


def test_the_pretrained_encoder_is_frozen_and_only_its_lora_adapters_train():
    model = _model("pretrained", lora_rank=4).train()
    encoder = model.encoder.net
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert not any(m.training for m in encoder.modules()
                   if isinstance(m, torch.nn.BatchNorm2d))
    frozen = sum(p.numel() for n, p in encoder.named_parameters() if "lora_" not in n)
    assert frozen > 3_000_000  # YAMNet
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - frozen


def test_feature_dropout_varies_training_memory_and_leaves_inference_alone():
    model = _model("pretrained", feature_dropout=0.5)
    mel = _mel(model, frames=96, batch=1)
    with torch.no_grad():
        served = model.encode(mel)
        assert torch.equal(served, model.encode(mel))
        model.train()
        assert not torch.allclose(model.encode(mel), served)


def test_greedy_decoding_stops_at_eos_and_strips_it():
    model = _model("baseline")
    with torch.no_grad():
        model.head.bias.fill_(-100.0)
        model.head.bias[EOS] = 100.0
    assert greedy_decode(model, _mel(model)) == [[], [], []]


@pytest.mark.parametrize("arch", ARCHS)
def test_decoding_several_captions_per_clip_equals_decoding_repeated_memory(arch):
    model = _model(arch)
    tokens = torch.randint(4, 40, (5, 7))
    clip_index = torch.tensor([0, 0, 1, 2, 2])
    with torch.no_grad():
        memory = model.encode(_mel(model))
        shared = model.decode(memory, tokens, clip_index)
        repeated = model.decode(memory[clip_index], tokens)
    torch.testing.assert_close(shared, repeated, atol=1e-5, rtol=1e-5)
