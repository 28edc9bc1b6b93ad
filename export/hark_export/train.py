"""The training recipe, learning-rate sweep and `hark-train` command line.

A run folder holds everything needed to rebuild and judge the model:
    config.json     the training config, model config, front end (with normalisation stats)
    vocab.txt       the word vocabulary (line number = token id)
    best.pt         the best checkpoint by validation loss (model + configs + vocab; loads on CPU)
    last.pt         the latest state (optimizer, schedule, RNG, history) for --resume
    log.csv         per epoch: train/val loss, learning rate, gradient norm, sampling rate, time
    loss.png        the loss curves
    metrics.json    greedy test-split captions scored: BLEU-4 and the share of distinct captions

Recipe: AdamW (weight decay on matrices only), per-architecture learning rate, linear warmup
then cosine decay, gradient clipping, label smoothing, scheduled sampling, SpecAugment,
dropout, early stopping on validation loss with per-architecture patience; optional techniques
(balanced sampling, caption filtering, curriculum, rare-word weighting, unlikelihood,
SCST) in techniques.py.
A run with --scst-epochs also writes scst.csv (per epoch: mean sampled and greedy reward,
validation CIDEr-D) and keeps in best.pt the SCST epoch with the best validation CIDEr-D.
"""

import argparse
import contextlib
import csv
import itertools
import json
import math
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from hark_export.config import (MODEL_CONFIGS, RECIPES, TrainConfig, model_config)
from hark_export.data import (LAYOUTS, PAD, CaptionDataset, Datasets, EncoderCache, FeatureCache,
                              StreamedFeatures, Vocab, collate, default_frontend,
                              normalise_caption, norm_stats, pad_mels)
from hark_export.distributed import Processes
from hark_export.metrics import bleu4, distinct_fraction
from hark_export.model import Captioner, build_model, count_parameters, greedy_decode
from hark_export.progress import progress
from hark_export.techniques import (SCST, ClipsWithReferences, balanced_weights,
                                    curriculum_indices, filter_captions, greedy_cider,
                                    scst_collate, single_tag_balance, token_weights,
                                    unlikelihood_loss, weighted_token_loss)

NORMALISATION = "front end applies (logmel - norm_mean) / norm_std; the cache holds raw logmel"


def pick_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def spec_augment(mel: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """SpecAugment: zero (= the feature mean) random time and frequency bands of each clip."""
    b, n_mels, t = mel.shape
    keep = torch.ones_like(mel, dtype=torch.bool)
    for count, width, size, axis in ((cfg.spec_time_masks, cfg.spec_time_width, t, 2),
                                     (cfg.spec_freq_masks, cfg.spec_freq_width, n_mels, 1)):
        positions = torch.arange(size, device=mel.device)
        for _ in range(count):
            w = torch.randint(0, width + 1, (b, 1), device=mel.device)
            start = (torch.rand(b, 1, device=mel.device) * (size - w).clamp(min=1)).long()
            band = (positions >= start) & (positions < start + w)  # (B, size)
            keep &= ~(band.unsqueeze(1) if axis == 2 else band.unsqueeze(2))
    return mel * keep


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at `total` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float):
    """AdamW; matrices and embeddings decay, biases and norm parameters don't (nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98))


def caption_loss(model: Captioner, mel, tokens, clip_index, label_smoothing: float,
                 sampling: float = 0.0, tags: torch.Tensor | None = None,
                 tag_weight: float = 0.0, weights: torch.Tensor | None = None,
                 unlikelihood: float = 0.0, single_tag_weight: float = 0.0,
                 tag_balance: torch.Tensor | None = None) -> torch.Tensor:
    """Token cross-entropy of a batch; with probability `sampling` each input token after
    <bos> is replaced by the model's own previous prediction (scheduled sampling, done as a
    no-grad teacher-forced pass followed by the real pass). With a tag head and `tags`
    [B, n_labels] targets, plus `tag_weight` times the tags' binary cross-entropy (summed over
    labels, averaged over clips). `weights` [V] weigh each target token's loss by its word;
    `unlikelihood` adds that times `unlikelihood_loss`; `single_tag_weight` that times the tag
    logits' softmax cross-entropy over the clips with exactly one tag, each label weighted by
    `tag_balance` [n_labels]."""
    inputs, targets = tokens[:, :-1], tokens[:, 1:]  # (N, L-1) each
    memory = model.encode(mel)  # (B, S, D), one row per clip
    tag_loss = 0.0
    if (tag_weight or single_tag_weight) and tags is not None and tags.shape[1] \
            and model.has_tag_head:
        known = ~tags[:, 0].isnan()  # clips of a dataset without labels teach no tags
        tag_logits = model.tag_logits(memory).float()
        if tag_weight and known.any():
            tag_loss = tag_weight * F.binary_cross_entropy_with_logits(
                tag_logits[known], tags[known], reduction="sum") / tags.shape[0]
        if single_tag_weight:
            single = known & (tags.nan_to_num().sum(dim=1) == 1)
            if single.any():
                tag_loss = tag_loss + single_tag_weight * F.cross_entropy(
                    tag_logits[single], tags[single].argmax(dim=1), weight=tag_balance)
    if sampling > 0:
        with torch.no_grad():
            predicted = model.decode(memory, inputs, clip_index).argmax(dim=2)  # (N, L-1)
        fed_back = torch.cat([inputs[:, :1], predicted[:, :-1]], dim=1)
        swap = (torch.rand(inputs.shape, device=inputs.device) < sampling) & (inputs != PAD)
        swap[:, 0] = False
        inputs = torch.where(swap, fed_back, inputs)
    logits = model.decode(memory, inputs, clip_index)  # (N, L-1, V)
    if weights is not None:
        loss = weighted_token_loss(logits, targets, weights, label_smoothing)
    else:
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(),
                               ignore_index=PAD, label_smoothing=label_smoothing)
    if unlikelihood:
        loss = loss + unlikelihood * unlikelihood_loss(logits, targets)
    return loss + tag_loss


@torch.no_grad()
def evaluate_loss(model: Captioner, loader, device, procs: Processes | None = None) -> float:
    """Mean teacher-forced token cross-entropy (no smoothing) over a loader (each process's
    share of it, summed over processes, when `procs` is given)."""
    model.eval()
    total, count = 0.0, 0
    for mel, tokens, clip_index, _ in loader:
        mel, tokens, clip_index = mel.to(device), tokens.to(device), clip_index.to(device)
        n = int((tokens[:, 1:] != PAD).sum())
        total += float(caption_loss(model, mel, tokens, clip_index, 0.0)) * n
        count += n
    if procs is not None:
        total, count = procs.sum(total, count)
    return total / max(count, 1)


@torch.no_grad()
def caption_clips(model: Captioner, dataset: CaptionDataset, vocab: Vocab, device,
                  batch_size: int = 32) -> list[str]:
    """Greedy captions of every clip of a dataset, decoded step by step."""
    model.eval()
    captions = []
    for lo in range(0, len(dataset), batch_size):
        mel = pad_mels([dataset[i][0] for i in range(lo, min(lo + batch_size, len(dataset)))])
        captions += [vocab.decode(ids) for ids in greedy_decode(model, mel.to(device))]
    return captions


def test_metrics(model: Captioner, dataset: CaptionDataset, vocab: Vocab, device) -> dict:
    """BLEU-4 and distinct-caption share of greedy captions, plus a few examples."""
    hyps = caption_clips(model, dataset, vocab, device)
    refs = [[normalise_caption(c) for c in clip.captions] for clip in dataset.clips]
    scenes = [clip.scene or "|".join(sorted(r)) for clip, r in zip(dataset.clips, refs)]
    return {"bleu4": bleu4(hyps, refs), "distinct": distinct_fraction(hyps, scenes),
            "clips": len(hyps), "scenes": len(set(scenes)),
            "examples": [{"hypothesis": h, "references": r} for h, r in zip(hyps[:8], refs)]}


def load_checkpoint(path: Path, device: str = "cpu") -> tuple[Captioner, Vocab, dict, dict]:
    """(model in eval mode, vocabulary, front end, raw checkpoint) from a run's .pt file."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = build_model(model_config(ckpt["model_config"]["arch"], ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.tag_labels = list(ckpt.get("labels", []))
    return model.to(device).eval(), Vocab(ckpt["vocab"]), ckpt["frontend"], ckpt


def plot_losses(curves: dict[str, list[float]], ylabel: str, path: Path) -> None:
    """Loss per epoch (from epoch 1), one labelled line per curve, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), losses, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(rows: list[dict], path: Path) -> None:
    """A run's train and validation loss per epoch (its log.csv rows) as a PNG."""
    plot_losses({"train (smoothed targets)": [r["train_loss"] for r in rows],
                 "validation": [r["val_loss"] for r in rows]}, "cross-entropy per token", path)


class Prepared:
    """Everything a run needs before the first step: vocabulary, model, front end, datasets."""

    def __init__(self, cfg: TrainConfig, quiet: bool = False):
        sources = Datasets([cfg.data, *cfg.more_data], cfg.layout)
        self.clips = sources.splits
        self.sample_weights = (torch.tensor(sources.weights, dtype=torch.double)
                               if sources.weighted else None)
        if cfg.filter_captions:
            self.clips["train"], dropped = filter_captions(self.clips["train"])
            if not quiet:
                print(f"caption filter: {dropped} too-short or near-duplicate training "
                      f"references dropped")
        self.vocab = Vocab.build([c for clip in self.clips["train"] for c in clip.captions],
                                 cfg.min_freq)
        self.labels = sources.labels
        self.model_config = model_config(cfg.arch, {"vocab_size": len(self.vocab),
                                                    "n_tags": len(self.labels), **cfg.model})
        self.model = build_model(self.model_config)
        self.model.tag_labels = list(self.labels)
        frontend = default_frontend({**self.model.frontend_overrides, **cfg.frontend})
        if frontend["n_mels"] != self.model_config.n_mels:
            raise ValueError(f"the front end has {frontend['n_mels']} mel bands but the model "
                             f"expects {self.model_config.n_mels}: set both")
        if cfg.max_seconds and not cfg.stream:
            raise ValueError("--max-seconds crops files as they are read: it needs --stream")
        if cfg.stream:
            cache = StreamedFeatures(frontend, cfg.max_seconds)
            train_features = StreamedFeatures(frontend, cfg.max_seconds, random_crop=True)
            stats_clips = self.clips["train"][:: max(1, len(self.clips["train"]) // 256)]
        else:
            cache = train_features = FeatureCache(
                Path(cfg.cache) if cfg.cache else sources.roots[0] / ".hark-cache", frontend)
            for split, clips in self.clips.items():
                cache.fill(clips, desc=f"features {split}", quiet=quiet)
            stats_clips = self.clips["train"]
        if "norm_mean" in self.model.frontend_overrides:  # a pretrained encoder fixes its own
            mean, std = frontend["norm_mean"], frontend["norm_std"]
        else:  # from the training features (streamed: 256 clips spread over the set)
            mean, std = norm_stats(cache, stats_clips)
        self.frontend = {**frontend, "norm_mean": mean, "norm_std": std}
        max_len = self.model_config.max_len
        # A frozen encoder runs once per clip: its outputs are cached and the model trains
        # from them (model.from_encoded), the decoder's cost per step all that is left.
        # Streamed, it runs in every step instead.
        encoded = None
        if getattr(self.model, "frozen_encoder", False) and not cfg.stream:
            key = self.model_config.encoder
            if getattr(self.model_config, "train_blocks", 0):
                key += f"|tuned:{self.model_config.train_blocks}"
            encoded = EncoderCache(cache, self.model.encoder, key, mean, std)
            for split, clips in self.clips.items():
                encoded.fill(clips, desc=f"encoder {split}", quiet=quiet)
            self.model.from_encoded = True
        self.datasets = {s: CaptionDataset(c, train_features if s == "train" else cache,
                                           self.vocab, mean, std, max_len, self.labels, encoded)
                         for s, c in self.clips.items()}


def warm_start(model: Captioner, path: Path, vocab: list[str]) -> str:
    """Loads the weights of checkpoint `path` into `model`; parameters only the model has
    (LoRA adapters) keep their initial values. Refuses another vocabulary or architecture."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt["vocab"] != vocab:
        raise ValueError(f"--init {path}: its vocabulary differs from this run's (train on the "
                         "same data with the same --min-freq)")
    own, state = model.state_dict(), {}
    for k, v in ckpt["state_dict"].items():  # LoRA wraps a layer: its weights move down one
        head, _, leaf = k.rpartition(".")
        state[k if k in own else f"{head}.base_layer.{leaf}"] = v
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any("lora" not in k for k in missing):
        raise ValueError(f"--init {path}: another architecture (unexpected {unexpected[:3]}, "
                         f"missing {[k for k in missing if 'lora' not in k][:3]})")
    return f"started from {path}: {len(missing)} new parameter tensors (LoRA) at their init"


class StepLoss(torch.nn.Module):
    """caption_loss as a module's forward, so DistributedDataParallel (which synchronises
    gradients around forward/backward) can wrap one training step."""

    def __init__(self, model: Captioner):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return caption_loss(self.model, *args, **kwargs)


def train(cfg: TrainConfig) -> dict:
    """Run the recipe; return the run summary (also written to metrics.json).

    Under torchrun every process runs this; `batch_size` is the global batch (clips per
    optimizer step), split over processes and `accumulate` micro-batches, so a run gives the
    same schedule on any number of processes and can resume on another number.
    """
    out = Path(cfg.out)
    if (out / "last.pt").exists() and not cfg.resume:
        raise FileExistsError(f"{out} already holds a run: pass --resume or another --out")
    procs = Processes(cfg.device)
    if procs.active and cfg.scst_epochs:
        raise ValueError("--scst-epochs runs in one process: train with torchrun first, then "
                         "run the SCST stage alone with --resume")
    torch.manual_seed(cfg.seed + procs.rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = procs.device or pick_device(cfg.device)
    recipe = RECIPES[cfg.arch]
    lr = cfg.lr or recipe.lr
    patience = cfg.patience or recipe.patience
    batch_size = cfg.batch_size or recipe.batch_size
    micro, rest = divmod(batch_size, procs.world * cfg.accumulate)
    if rest or not micro:
        raise ValueError(f"the batch of {batch_size} clips does not split into {procs.world} "
                         f"processes x {cfg.accumulate} accumulation steps")
    say = print if procs.main else (lambda *a, **k: None)

    if procs.main:  # rank 0 fills the feature caches; the others then find them full
        out.mkdir(parents=True, exist_ok=True)
        prep = Prepared(cfg)
    procs.barrier()
    if not procs.main:
        prep = Prepared(cfg, quiet=True)
    model = prep.model.to(device)
    if cfg.init and not (cfg.resume and (out / "last.pt").exists()):
        say(warm_start(model, Path(cfg.init), prep.vocab.itos))
    if procs.main:
        prep.vocab.save(out / "vocab.txt")
        run_config = {"train": asdict(cfg), "model": asdict(prep.model_config),
                      "frontend": prep.frontend, "normalisation": NORMALISATION,
                      "lr": lr, "patience": patience, "batch_size": batch_size,
                      "processes": procs.world}
        (out / "config.json").write_text(json.dumps(run_config, indent=2) + "\n")

    generator = torch.Generator().manual_seed(cfg.seed)
    loader_args = {"batch_size": micro, "collate_fn": collate,
                   "num_workers": cfg.workers, "pin_memory": device.type == "cuda"}
    train_clips = prep.datasets["train"].clips
    sample_weights = prep.sample_weights  # datasets of different --data weights
    if cfg.balance:
        balanced = balanced_weights(train_clips)
        sample_weights = balanced if sample_weights is None else balanced * sample_weights

    def train_loader(epoch: int):
        """This process's batches this epoch: the curriculum's subset, drawn balanced or
        shuffled; in several processes each draws its own share, seeded by epoch and rank."""
        chosen = curriculum_indices(train_clips, epoch, cfg.curriculum)
        data = torch.utils.data.Subset(prep.datasets["train"], chosen)
        draw = generator
        if procs.active:
            draw = torch.Generator().manual_seed(cfg.seed * 100003 + epoch * 1009 + procs.rank)
        if sample_weights is not None:
            sampler = torch.utils.data.WeightedRandomSampler(
                sample_weights[chosen], len(chosen) // procs.world, generator=draw)
        elif procs.active:
            sampler = torch.utils.data.DistributedSampler(data, procs.world, procs.rank,
                                                          seed=cfg.seed, drop_last=True)
            sampler.set_epoch(epoch)
        else:
            sampler = torch.utils.data.RandomSampler(data, generator=draw)
        # The loader's own seed comes from `draw` too, so the global RNG (dropout,
        # SpecAugment) sees exactly the draws it did before any of these options existed.
        return torch.utils.data.DataLoader(data, sampler=sampler, drop_last=True,
                                           generator=draw, **loader_args)

    val_share = torch.utils.data.Subset(prep.datasets["val"], procs.shard(len(prep.datasets["val"])))
    val_loader = torch.utils.data.DataLoader(val_share, **loader_args)
    optimizer = make_optimizer(model, lr, cfg.weight_decay)
    total_steps = sum(len(curriculum_indices(train_clips, e, cfg.curriculum)) // batch_size
                      for e in range(cfg.epochs))
    warmup = max(1, int(cfg.warmup * total_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, cfg.min_lr_ratio))
    amp = device.type == "cuda"
    # Cached encoder outputs have one frame per S mel frames: mask a frame or two in time,
    # no feature bands (the masks of SpecAugment are for mels).
    augment = (replace(cfg, spec_time_width=2, spec_freq_masks=0)
               if getattr(model, "from_encoded", False) else cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    weights = (token_weights(prep.vocab, [c for clip in train_clips for c in clip.captions],
                             cfg.rare_word_weight).to(device)
               if cfg.rare_word_weight else None)
    step_loss = procs.wrap(StepLoss(model), unused_parameters=model.has_tag_head
                           and not ((cfg.tag_weight or cfg.single_tag_weight) and prep.labels))
    tag_balance = (single_tag_balance(train_clips, prep.labels).to(device)
                   if cfg.single_tag_weight and prep.labels else None)

    history, best_val, bad_epochs, start_epoch, elapsed = [], math.inf, 0, 0, 0.0
    if cfg.resume and (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location=device, weights_only=True)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        generator.set_state(state["loader_rng"])
        history, best_val, bad_epochs = state["history"], state["best_val"], state["bad_epochs"]
        start_epoch, elapsed = state["epoch"] + 1, state["elapsed"]

    checkpoint = {"model_config": asdict(prep.model_config), "frontend": prep.frontend,
                  "vocab": prep.vocab.itos, "labels": prep.labels,
                  "normalisation": NORMALISATION}
    started = time.time() - elapsed
    say(f"{cfg.arch}: {count_parameters(model):,} parameters "
        f"({count_parameters(model, True):,} trainable), vocabulary {len(prep.vocab)}, "
        f"{len(prep.datasets['train'])} training clips, device {device}, lr {lr:g}, "
        f"batch {batch_size} = {procs.world} process(es) x {cfg.accumulate} x {micro}")
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        sampling = cfg.scheduled_sampling * epoch / max(1, cfg.epochs - 1)
        sums = {"loss": 0.0, "grad_norm": 0.0, "steps": 0}
        loader = train_loader(epoch)
        epoch_start = time.time()
        bar = progress(loader, f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       disable=not procs.main)
        optimizer.zero_grad(set_to_none=True)
        for i, (mel, tokens, clip_index, tags) in enumerate(bar):
            mel, tokens, clip_index = mel.to(device), tokens.to(device), clip_index.to(device)
            stepping = (i + 1) % cfg.accumulate == 0
            # Between optimizer steps the processes keep their gradients to themselves.
            with (contextlib.nullcontext() if stepping or not procs.active
                  else step_loss.no_sync()):
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    loss = step_loss(spec_augment(mel, augment), tokens, clip_index,
                                     cfg.label_smoothing, sampling, tags.to(device),
                                     cfg.tag_weight, weights,
                                     cfg.unlikelihood, cfg.single_tag_weight,
                                     tag_balance) / cfg.accumulate
                scaler.scale(loss).backward()
            sums["loss"] += loss.item()
            if not stepping:
                continue
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            sums["grad_norm"] += grad_norm.item()
            sums["steps"] += 1
            bar.set_postfix(loss=f"{loss.item() * cfg.accumulate:.3f}")
        steps = max(sums["steps"], 1)
        train_loss, clips_seen, seconds = procs.sum(sums["loss"] / steps / procs.world,
                                                    sums["steps"] * batch_size / procs.world,
                                                    time.time() - epoch_start)
        val_loss = evaluate_loss(model, val_loader, device, procs)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
               "lr": schedule.get_last_lr()[0], "grad_norm": sums["grad_norm"] / steps,
               "sampling": sampling, "clips_per_s": clips_seen / (seconds / procs.world),
               "seconds": time.time() - started}
        history.append(row)
        improved = val_loss < best_val - 1e-4
        if improved:
            best_val, bad_epochs = val_loss, 0
            if procs.main:
                torch.save({**checkpoint, "state_dict": model.state_dict(),
                            "epoch": epoch + 1, "val_loss": val_loss}, out / "best.pt")
        else:
            bad_epochs += 1
        if procs.main:
            torch.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(), "scaler": scaler.state_dict(),
                        "rng": torch.get_rng_state(), "loader_rng": generator.get_state(),
                        "history": history, "best_val": best_val, "bad_epochs": bad_epochs,
                        "epoch": epoch, "elapsed": time.time() - started}, out / "last.pt")
            with open(out / "log.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(row))
                writer.writeheader()
                writer.writerows(history)
            plot_curves(history, out / "loss.png")
        say(f"epoch {epoch + 1}: train {row['train_loss']:.3f}  val {val_loss:.3f}"
            f"{' (best)' if improved else ''}  lr {row['lr']:.2e}  "
            f"grad {row['grad_norm']:.2f}  {row['clips_per_s']:.0f} clips/s  "
            f"{row['seconds'] / 60:.1f} min")
        if bad_epochs >= patience:
            say(f"early stop: no validation improvement for {patience} epochs")
            break
        ends = [0.0] + [r["seconds"] for r in history]
        slowest = max(b - a for a, b in zip(ends, ends[1:]))  # load on a shared machine varies
        if procs.agree(bool(cfg.max_minutes) and row["seconds"] + slowest > 60 * cfg.max_minutes):
            say(f"stop: another epoch would overrun the {cfg.max_minutes} min budget")
            break

    procs.barrier()  # best.pt is complete before anyone reads it
    if cfg.scst_epochs:
        scst_stage(cfg, prep, model, out, device, batch_size)
    best = torch.load(out / "best.pt", map_location=device, weights_only=True)
    summary = {"arch": cfg.arch, "parameters": count_parameters(model),
               "train_minutes": history[-1]["seconds"] / 60, "epochs": len(history),
               "best_epoch": best["epoch"], "best_val_loss": best["val_loss"], "lr": lr,
               "processes": procs.world}
    if cfg.evaluate_test and procs.main:
        model.load_state_dict(best["state_dict"])
        summary["test"] = test_metrics(model, prep.datasets["test"], prep.vocab, device)
        print(f"test: BLEU-4 {summary['test']['bleu4']:.3f}, distinct captions "
              f"{100 * summary['test']['distinct']:.1f}% of {summary['test']['scenes']} scenes")
    if procs.main:
        (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    procs.close()
    return summary


def scst_stage(cfg: TrainConfig, prep: Prepared, model: Captioner, out: Path, device,
               batch_size: int) -> None:
    """Fine-tune best.pt with SCST for cfg.scst_epochs; best.pt becomes the epoch with the
    best greedy CIDEr-D on the validation split, if any beats the cross-entropy model."""
    best = torch.load(out / "best.pt", map_location=device, weights_only=True)
    model.load_state_dict(best["state_dict"])
    checkpoint = {k: v for k, v in best.items() if k != "state_dict"}
    scst = SCST(prep.vocab, [c.captions for c in prep.datasets["train"].clips],
                cfg.scst_samples, prep.model_config.max_len)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    loader = torch.utils.data.DataLoader(ClipsWithReferences(prep.datasets["train"]),
                                         batch_size=batch_size, shuffle=True, drop_last=True,
                                         generator=generator, collate_fn=scst_collate)
    val = torch.utils.data.DataLoader(ClipsWithReferences(prep.datasets["val"]),
                                      batch_size=64, collate_fn=scst_collate)
    optimizer = make_optimizer(model, cfg.scst_lr, cfg.weight_decay)
    best_cider = greedy_cider(model, val, scst)
    print(f"scst: validation CIDEr-D {best_cider:.3f} before")
    rows, started = [], time.time()
    for epoch in range(cfg.scst_epochs):
        model.eval()  # sample from the model as it decodes (no dropout): the reward is its own
        sums = {"sampled": 0.0, "greedy": 0.0}
        bar = progress(loader, f"scst {epoch + 1}/{cfg.scst_epochs}", unit="batch")
        for x, refs in bar:
            loss, sampled, greedy = scst.loss(model, x.to(device), refs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            sums["sampled"] += sampled
            sums["greedy"] += greedy
            bar.set_postfix(reward=f"{sampled:.2f}", greedy=f"{greedy:.2f}")
        cider = greedy_cider(model, val, scst)
        row = {"epoch": epoch + 1, "sampled_reward": sums["sampled"] / len(loader),
               "greedy_reward": sums["greedy"] / len(loader), "val_cider_d": cider,
               "seconds": time.time() - started}
        rows.append(row)
        improved = cider > best_cider
        if improved:
            best_cider = cider
            torch.save({**checkpoint, "state_dict": model.state_dict(), "scst_epoch": epoch + 1,
                        "val_cider_d": cider}, out / "best.pt")
        print(f"scst epoch {epoch + 1}: reward {row['sampled_reward']:.3f} (greedy "
              f"{row['greedy_reward']:.3f})  val CIDEr-D {cider:.3f}"
              f"{' (best)' if improved else ''}  {row['seconds'] / 60:.1f} min")
        with open(out / "scst.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(rows)


def sweep(cfg: TrainConfig, grid: dict[str, list]) -> list[dict]:
    """Train once per point of `grid` ({"lr": [...], model option: [...]}, e.g. lora_rank and
    lora_alpha), each in OUT/<point>; print and write the table (sweep.csv, sweep.md) of the
    best validation loss of each point, and plot every point's validation curve (sweep.png)."""
    keys = list(grid)
    rows, curves = [], {}
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values))
        name = "_".join(f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}"
                        for k, v in point.items())
        run = replace(cfg, out=str(Path(cfg.out) / name), evaluate_test=False,
                      lr=point.get("lr", cfg.lr),
                      model={**cfg.model, **{k: v for k, v in point.items() if k != "lr"}})
        summary = train(run)
        rows.append({**point, "best_val_loss": summary["best_val_loss"],
                     "best_epoch": summary["best_epoch"], "minutes": summary["train_minutes"]})
        with open(Path(run.out) / "log.csv", newline="") as f:
            curves[name] = [float(r["val_loss"]) for r in csv.DictReader(f)]
    header = [*keys, "best val loss", "epoch", "minutes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [f"{r[k]:.2e}" if k == "lr" else str(r[k]) for k in keys]
        lines.append("| " + " | ".join([*cells, f"{r['best_val_loss']:.4f}",
                                        str(r["best_epoch"]), f"{r['minutes']:.1f}"]) + " |")
    print("\n" + "\n".join(lines))
    out = Path(cfg.out)
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    with open(out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_losses(curves, "validation cross-entropy per token", out / "sweep.png")
    return rows


def _grid(lrs: str, options: list[str]) -> dict[str, list]:
    """--lrs 1e-3,3e-3 and --grid KEY=V1,V2 options -> {"lr": [...], KEY: [...]}."""
    grid = {"lr": [float(x) for x in lrs.split(",")]} if lrs else {}
    for option in options:
        key, _, values = option.partition("=")
        if not key or not values:
            raise ValueError(f"--grid {option}: give KEY=VALUE,VALUE (e.g. lora_rank=4,8,16)")
        grid[key] = [json.loads(v) for v in values.split(",")]
    if not grid:
        raise ValueError("nothing to sweep: give --lrs and/or --grid")
    return grid


def _key_values(pairs: list[str]) -> dict:
    """["hidden=512", "channels=[16,32]"] -> {"hidden": 512, "channels": [16, 32]}."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field (dict fields become repeatable KEY=VALUE options)."""
    parser.add_argument("data", help="dataset folder (Clotho, AudioCaps, WavCaps or manifest "
                        "layout), optionally FOLDER:WEIGHT")
    parser.add_argument("--data", dest="more_data", action="append", default=[],
                        metavar="FOLDER[:WEIGHT]",
                        help="another dataset to train on as well; WEIGHT (default 1) scales "
                        "how often its clips are drawn")
    parser.add_argument("--set", dest="model", action="append", default=[], metavar="KEY=VALUE",
                        help="model option, e.g. --set hidden=512 --set channels=[16,32,64]")
    parser.add_argument("--frontend", action="append", default=[], metavar="KEY=VALUE",
                        help="dsp front-end option, e.g. --frontend n_mels=80")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in ("data", "more_data", "model", "frontend"):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif f.name == "arch":
            parser.add_argument(flag, choices=sorted(MODEL_CONFIGS), default=default)
        elif f.name == "layout":
            parser.add_argument(flag, choices=LAYOUTS, default=default)
        else:
            kind = float if f.name in ("lr",) else type(default) if default is not None else int
            parser.add_argument(flag, type=kind, default=default)


def main(argv: list[str] | None = None) -> None:
    """`hark-train train|sweep|params`."""
    parser = argparse.ArgumentParser(prog="hark-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train_options(sub.add_parser("train", help="train one model"))
    p = sub.add_parser("sweep", help="a grid of learning rates and model options: the best "
                       "validation loss of each point, a table and a plot")
    _add_train_options(p)
    p.add_argument("--lrs", default="3e-4,1e-3,3e-3",
                   help="comma-separated learning rates ('' keeps the recipe's)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a model option's values, e.g. --grid lora_rank=4,8 --grid lora_alpha=8,16")
    p = sub.add_parser("params", help="parameter count of each architecture's defaults")
    p.add_argument("--vocab", type=int, default=4400)
    args = parser.parse_args(argv)

    if args.command == "params":
        for arch in ("baseline", "improved", "attention", "transformer"):
            model = build_model(model_config(arch, {"vocab_size": args.vocab}))
            print(f"{arch:12s} {count_parameters(model):>12,}")
        return
    values = vars(args)
    cfg = TrainConfig(**{f.name: values[f.name] for f in fields(TrainConfig)
                         if f.name not in ("model", "frontend")},
                      model=_key_values(args.model), frontend=_key_values(args.frontend))
    if args.command == "sweep":
        sweep(cfg, _grid(args.lrs, args.grid))
    else:
        train(cfg)


if __name__ == "__main__":
    main()
