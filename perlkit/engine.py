"""The one training loop and the one evaluation loop, shared by every method.

Methods only say what a forward pass returns (``Method.forward``) and how they classify (``classifier`` and
``logits``); this module owns seeding, optimisers, schedules, mixed precision, progress bars and checkpoints.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import perlkit
from perlkit.files import atomic_write_bytes, git_commit
from perlkit.methods.base import Classifier, ClassSet, Method, TrainOutput

_log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation recipe. Defaults are PERL's (App. A); every method states its own in ``Method.recipe``."""

    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 4
    optimizer: str = "adamw"  # "adamw" | "sgd"
    weight_decay: float = 0.01  # [NS] in the paper: torch's AdamW default
    momentum: float = 0.9  # sgd only
    scheduler: str = "constant"  # "constant" | "cosine"
    schedule_unit: str = "step"  # "step": the lr changes every optimiser step; "epoch": once an epoch, as Dassl does
    warmup_steps: int | None = None  # constant warm-up for this many steps; None: not set (then warmup_epochs counts)
    warmup_epochs: int = 0  # constant warm-up for this many epochs (Dassl's WARMUP_EPOCH)
    warmup_factor: float = 1e-5 / 2e-3  # warm-up lr = lr * warmup_factor...
    warmup_lr: float | None = None  # ...unless this absolute warm-up lr is set (Dassl's WARMUP_CONS_LR)
    grad_clip: float = 0.0
    seed: int = 1
    max_steps: int = 0  # >0 caps the number of optimiser steps (smoke runs)

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r} (use one of {', '.join(SCHEDULERS)})")
        if self.schedule_unit not in SCHEDULE_UNITS:
            raise ValueError(f"unknown schedule_unit {self.schedule_unit!r} (use one of {', '.join(SCHEDULE_UNITS)})")
        if self.schedule_unit == "epoch" and self.warmup_steps is not None:
            raise ValueError("schedule_unit='epoch' counts the warm-up in epochs: set warmup_epochs, not warmup_steps")
        if (self.warmup_steps or 0) < 0 or self.warmup_epochs < 0:
            raise ValueError(f"warm-up must be >= 0, got {self.warmup_steps} steps, {self.warmup_epochs} epochs")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for result files."""
        return asdict(self)

    def warmup_length(self, steps_per_epoch: int) -> int:
        """Warm-up steps of the step-wise schedule: ``warmup_steps`` when set (0 means none), else whole epochs."""
        return self.warmup_steps if self.warmup_steps is not None else self.warmup_epochs * steps_per_epoch

    def learning_rate(self, step: int, epoch: int, total: int, warmup: int) -> float:
        """The lr of one optimiser step: per step (perlkit) or, with ``schedule_unit='epoch'``, per epoch (Dassl)."""
        if self.schedule_unit == "epoch":
            return self.epoch_learning_rate(epoch)
        if step < warmup and self.warmup_lr is not None:
            return self.warmup_lr
        return self.lr * _lr_factor(step, total, warmup, self)

    def epoch_learning_rate(self, epoch: int) -> float:
        """Dassl's ``build_lr_scheduler``, stepped once an epoch: a constant warm-up lr for ``warmup_epochs``
        epochs, then ``CosineAnnealingLR(T_max=epochs)`` restarted at 0 after the warm-up (``WARMUP_RECOUNT=True``),
        so the first epoch after the warm-up runs at the peak lr and the last at ``lr * (1 + cos(pi (E-1-W)/E)) / 2``.
        """
        if epoch < self.warmup_epochs:
            return self.warmup_lr if self.warmup_lr is not None else self.lr * self.warmup_factor
        if self.scheduler == "constant":
            return self.lr
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - self.warmup_epochs) / self.epochs))


SCHEDULERS = ("constant", "cosine")
SCHEDULE_UNITS = ("step", "epoch")
#: what the unified one-epoch protocol (the paper's App. D) sets over every method's own recipe
UNIFIED_OVERRIDES: dict[str, Any] = {"epochs": 1, "warmup_epochs": 0, "warmup_steps": None, "schedule_unit": "step"}


PROTOCOLS = ("unified", "default")


def check_protocol(protocol: str) -> None:
    """Refuse a protocol name that is neither the paper's one-epoch protocol nor the methods' own recipes."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be 'unified' or 'default', got {protocol!r}")


def recipe(
    method: Method | type[Method],
    protocol: str = "unified",
    dataset: str | None = None,
    task: str = "b2n",
    **overrides: Any,
) -> TrainConfig:
    """The training recipe of a method: PERL's 1-epoch protocol ('unified') or its own paper's ('default').

    'default': the method's ``recipe``, then its ``dataset_recipe(dataset, task)`` (official per-dataset / per-task
    configs) when a dataset is given. 'unified': the method's ``recipe`` with ``UNIFIED_OVERRIDES`` (one epoch, no
    warm-up, the lr changing every step, as perlkit has always run it). Explicit ``overrides`` come last.
    """
    check_protocol(protocol)
    own = dict(method.recipe)
    if protocol == "unified":
        # the paper's fast-adaptation protocol: one epoch, 16 shots; each method keeps its own optimiser settings,
        # but an epoch-long warm-up would swallow the only epoch, so it is dropped
        own.update(UNIFIED_OVERRIDES)
    elif dataset is not None:
        own.update(method.dataset_recipe(dataset, task))
    own.update(overrides)
    unknown = set(own) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown recipe key(s) {sorted(unknown)}; valid: {sorted(TrainConfig.__dataclass_fields__)}")
    return TrainConfig(**own)


#: the training crop of the unified protocol for every method (perlkit's, MMRL's configs' RRCROP_SCALE)
UNIFIED_CROP_SCALE: tuple[float, float] = (0.5, 1.0)


def protocol_template(method: Method | type[Method], protocol: str, requested: str = "coop") -> str:
    """The prompt template kind of a run: the requested one (CoOp's, App. D) under 'unified', the method's own
    official prompts (``Method.own_template``) under 'default'."""
    check_protocol(protocol)
    return method.own_template if protocol == "default" else requested


def protocol_crop_scale(method: Method | type[Method], protocol: str) -> tuple[float, float]:
    """The ``RandomResizedCrop`` scale of a run: ``UNIFIED_CROP_SCALE`` under 'unified', the method's official one
    (``Method.crop_scale``) under 'default'."""
    check_protocol(protocol)
    return tuple(method.crop_scale) if protocol == "default" else UNIFIED_CROP_SCALE


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


def make_optimizer(method: Method, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimiser over a method's trainable parameters (the one place optimisers are built)."""
    params = [p for _, p in method.trainable_parameters()]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (use 'adamw' or 'sgd')")


def _lr_factor(step: int, total: int, warmup: int, cfg: TrainConfig) -> float:
    """The step-wise schedule as a factor of ``cfg.lr``: constant warm-up, then constant or cosine to 0 at ``total``."""
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


def train_step(
    method: Method,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    classes: ClassSet,
    *,
    grad_clip: float = 0.0,
) -> TrainOutput:
    """One optimiser step (forward under autocast, backward, clipping, update): training and the bench share it.

    A loss that no trainable parameter reaches is returned untouched, without a step; the caller decides.
    """
    with autocast_context(method.backbone.device):
        out = method(images, labels, classes)
    if not out.loss.requires_grad:
        return out
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], grad_clip)
    optimizer.step()
    return out


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
    optimizer = make_optimizer(method, cfg)
    steps_per_epoch = _len_or_none(batches(0))
    total = cfg.epochs * steps_per_epoch if steps_per_epoch else 0
    if cfg.max_steps:
        total = min(total, cfg.max_steps) if total else cfg.max_steps
    warmup = cfg.warmup_length(steps_per_epoch)  # a recipe's 0 means no warm-up: no `or` fall-through
    if not torch.is_grad_enabled():
        raise RuntimeError(f"{desc}: training needs gradients, but it was called under torch.no_grad()")
    method.train()
    start, step, fitting = time.perf_counter(), 0, True
    bar = tqdm(total=total or None, desc=desc, disable=not progress, leave=False)
    for epoch in range(cfg.epochs):
        for images, labels in batches(epoch):
            lr = cfg.learning_rate(step, epoch, total or 1, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = images.to(device), labels.to(device)
            out = train_step(method, optimizer, images, labels, classes, grad_clip=cfg.grad_clip)
            if not out.loss.requires_grad:  # nothing trainable reaches the loss: train nothing, as for zero-shot
                fitting = _skip_training(method, desc, step)
                break
            step += 1
            history.images += images.shape[0]
            history.steps.append({"step": step, "loss": out.loss.item(), "lr": lr, **out.terms})
            bar.update(1)
            bar.set_postfix(loss=f"{out.loss.item():.3f}")
            if cfg.max_steps and step >= cfg.max_steps:
                break
        if not fitting or (cfg.max_steps and step >= cfg.max_steps):
            break
    bar.close()
    method.eval()
    history.seconds = time.perf_counter() - start
    return history


def _skip_training(method: Method, desc: str, step: int) -> bool:
    """Log (or, past the first step, refuse) a loss with no gradient path; returns False: stop fitting."""
    if step:
        raise RuntimeError(f"{desc}: {method.name}'s loss lost its gradient path at step {step + 1}")
    _log.warning("%s: %s's loss does not depend on any trainable parameter, so there is nothing to fit: training "
                 "skipped, the method is evaluated as built (PERL with steps=0 is zero-shot CLIP)", desc, method.name)
    return False


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


def save_checkpoint(method: Method, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Store only the trainable tensors plus what is needed to refuse a wrong load later (method, options,
    backbone name and the sha256 of its frozen weights)."""
    import io

    payload = {
        "format": CHECKPOINT_FORMAT,
        "method": method.name,
        "config": method.config_dict(),
        "backbone": {"model": method.backbone.model_name, "pretrained": method.backbone.pretrained,
                     "weights_sha256": method.backbone.weights_sha256()},
        "state_dict": method.trainable_state_dict(),
        "perlkit_version": perlkit.__version__,
        "git_commit": git_commit(),
        "extra": extra or {},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's payload, safely unpickled (tensors and plain data only), or a ``CheckpointError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, unsafe pickle: all mean "not a usable checkpoint"
        raise CheckpointError(f"{path} is not a readable perlkit checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a perlkit checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    missing = [key for key in ("method", "config", "backbone", "state_dict") if key not in payload]
    if missing or not isinstance(payload["backbone"], dict) or not isinstance(payload["state_dict"], dict):
        fields = missing or ["backbone/state_dict"]
        raise CheckpointError(f"{path} is incomplete: missing or malformed field(s) {', '.join(fields)}")
    return payload


def load_checkpoint(method: Method, path: str | os.PathLike) -> dict[str, Any]:
    """Load trainable tensors into a method after checking method, backbone, weights and shapes; returns the payload."""
    path = Path(path)
    payload = read_checkpoint(path)
    if payload["method"] != method.name:
        raise CheckpointError(
            f"{path} holds a {payload['method']!r} checkpoint, but it is being loaded into {method.name!r}; "
            f"build the method with build_method({payload['method']!r}, ...) instead"
        )
    model = payload["backbone"].get("model")
    if model != method.backbone.model_name:
        raise CheckpointError(
            f"{path} was trained on backbone {model!r}, but the method runs on {method.backbone.model_name!r}; "
            "the thought projectors' widths would not match"
        )
    weights = payload["backbone"].get("weights_sha256")
    if weights is None:
        raise CheckpointError(f"{path} does not record its backbone weights' sha256; retrain it with this perlkit")
    if weights != method.backbone.weights_sha256():
        raise CheckpointError(
            f"{path} was trained on other {model!r} weights (sha256 {weights[:12]}...) than the loaded ones "
            f"({method.backbone.weights_sha256()[:12]}..., from {method.backbone.pretrained!r}); load the weights it "
            "was trained on"
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
