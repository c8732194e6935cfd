"""The one training loop and the one evaluation loop, shared by every method.

Methods only say what a forward pass returns (``Method.forward``) and how they classify (``classifier`` and
``logits``); this module owns seeding, optimisers, schedules, mixed precision, progress bars and checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import perlkit
from perlkit.methods.base import Classifier, ClassSet, Method


@dataclass
class TrainConfig:
    """Optimisation recipe. Defaults are PERL's (App. A); rivals override through their ``recipe``."""

    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 4
    optimizer: str = "adamw"  # "adamw" | "sgd"
    weight_decay: float = 0.01  # [NS] in the paper: torch's AdamW default
    momentum: float = 0.9  # sgd only
    scheduler: str = "constant"  # "constant" | "cosine"
    warmup_steps: int = 0  # constant warm-up at lr * warmup_factor for this many steps...
    warmup_epochs: int = 0  # ...or this many epochs (MMRL's recipe), converted once the loader length is known
    warmup_factor: float = 1e-5 / 2e-3
    grad_clip: float = 0.0
    seed: int = 1
    max_steps: int = 0  # >0 caps the number of optimiser steps (smoke runs)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for result files."""
        return asdict(self)


def recipe(method: Method | type[Method], protocol: str = "unified", **overrides: Any) -> TrainConfig:
    """The training recipe of a method: PERL's 1-epoch protocol ('unified') or its own paper's ('default')."""
    if protocol not in ("unified", "default"):
        raise ValueError(f"protocol must be 'unified' or 'default', got {protocol!r}")
    own = dict(getattr(method, "recipe", {}) or {})
    if protocol == "unified":
        # the paper's fast-adaptation protocol: one epoch, 16 shots; each method keeps its own optimiser settings,
        # but an epoch-long warm-up would swallow the only epoch, so it is dropped
        own["epochs"] = 1
        own["warmup_epochs"] = 0
    own.update(overrides)
    unknown = set(own) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown recipe key(s) {sorted(unknown)}; valid: {sorted(TrainConfig.__dataclass_fields__)}")
    return TrainConfig(**own)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, as Dassl does before building data and model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing on CPU (CPU numbers stay exactly reproducible)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (use 'adamw' or 'sgd')")


def _lr_factor(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    if step < warmup:
        return cfg.warmup_factor
    if cfg.scheduler == "constant":
        return 1.0
    if cfg.scheduler == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"unknown scheduler {cfg.scheduler!r} (use 'constant' or 'cosine')")


@dataclass
class TrainHistory:
    """Per-step log of one training run (loss terms, learning rate) and its wall time."""

    steps: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for result files."""
        return {"steps": self.steps, "seconds": self.seconds, "images": self.images}


def train(
    method: Method,
    batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    classes: ClassSet,
    cfg: TrainConfig,
    *,
    progress: bool = True,
    desc: str = "train",
) -> TrainHistory:
    """Fit a method's trainable parameters; ``batches(epoch)`` yields (images, labels) for one epoch."""
    history = TrainHistory()
    params = [p for _, p in method.trainable_parameters()]
    if not params:
        return history
    device = method.backbone.device
    seed_everything(cfg.seed)
    optimizer = _optimizer(params, cfg)
    steps_per_epoch = _len_or_none(batches(0))
    total = cfg.epochs * steps_per_epoch if steps_per_epoch else 0
    if cfg.max_steps:
        total = min(total, cfg.max_steps) if total else cfg.max_steps
    warmup = cfg.warmup_steps or cfg.warmup_epochs * steps_per_epoch
    method.train()
    start, step = time.perf_counter(), 0
    bar = tqdm(total=total or None, desc=desc, disable=not progress, leave=False)
    for epoch in range(cfg.epochs):
        for images, labels in batches(epoch):
            factor = _lr_factor(step, total or 1, warmup, cfg)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * factor
            images, labels = images.to(device), labels.to(device)
            with autocast_context(device):
                out = method(images, labels, classes)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            step += 1
            history.images += images.shape[0]
            history.steps.append({"step": step, "loss": out.loss.item(), "lr": cfg.lr * factor, **out.terms})
            bar.update(1)
            bar.set_postfix(loss=f"{out.loss.item():.3f}")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        if cfg.max_steps and step >= cfg.max_steps:
            break
    bar.close()
    method.eval()
    history.seconds = time.perf_counter() - start
    return history


def _len_or_none(iterable: Iterable) -> int:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return 0


@dataclass
class EvalResult:
    """Accuracy of one closed-set problem, with the counts behind it."""

    accuracy: float
    correct: int
    total: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data for result files."""
        return asdict(self)


@torch.no_grad()
def evaluate(
    method: Method,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    classes: ClassSet,
    target: str = "base",
    *,
    classifier: Classifier | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> EvalResult:
    """Top-1 accuracy (percent) of a method on labelled batches; the text side is computed once."""
    method.eval()
    device = method.backbone.device
    start = time.perf_counter()
    with autocast_context(device):
        classifier = classifier or method.classifier(classes, target)
    correct = total = 0
    for images, labels in tqdm(batches, desc=desc, disable=not progress, leave=False):
        with autocast_context(device):
            logits = method.logits(images.to(device), classifier)
        correct += int((logits.argmax(dim=-1).cpu() == labels).sum())
        total += labels.numel()
    if total == 0:
        raise ValueError(f"{desc}: no test images to evaluate")
    return EvalResult(100.0 * correct / total, correct, total, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------- checkpoints
CHECKPOINT_FORMAT = "perlkit-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that does not fit the method or backbone it is loaded into."""


def git_commit() -> str:
    """The current git commit of the perlkit checkout, or 'unknown' outside a repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(perlkit.__file__).parent
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that a killed process leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | os.PathLike, payload: Any) -> None:
    """Atomic JSON write (results, caches, sampled splits)."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())


def save_checkpoint(method: Method, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Store only the trainable tensors plus what is needed to refuse a wrong load later."""
    import io

    payload = {
        "format": CHECKPOINT_FORMAT,
        "method": method.name,
        "config": method.config_dict(),
        "backbone": {"model": method.backbone.model_name, "pretrained": method.backbone.pretrained},
        "state_dict": method.trainable_state_dict(),
        "perlkit_version": perlkit.__version__,
        "git_commit": git_commit(),
        "extra": extra or {},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(method: Method, path: str | os.PathLike) -> dict[str, Any]:
    """Load trainable tensors into a method after checking method, backbone and shapes; returns the payload."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a perlkit checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    if payload["method"] != method.name:
        raise CheckpointError(
            f"{path} holds a {payload['method']!r} checkpoint, but it is being loaded into {method.name!r}; "
            f"build the method with build_method({payload['method']!r}, ...) instead"
        )
    model = payload["backbone"]["model"]
    if model != method.backbone.model_name:
        raise CheckpointError(
            f"{path} was trained on backbone {model!r}, but the method runs on {method.backbone.model_name!r}; "
            "the thought projectors' widths would not match"
        )
    if payload["config"] != method.config_dict():
        raise CheckpointError(
            f"{path} was trained with options {payload['config']}, the method has {method.config_dict()}"
        )
    own = dict(method.trainable_parameters())
    missing = sorted(set(own) - set(payload["state_dict"]))
    unexpected = sorted(set(payload["state_dict"]) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    for name, tensor in payload["state_dict"].items():
        if tensor.shape != own[name].shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, expected {tuple(own[name].shape)}")
    method.load_state_dict(payload["state_dict"], strict=False)
    return payload
