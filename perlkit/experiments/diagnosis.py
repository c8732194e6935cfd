"""Why does PERL gain so little where a linear probe finds room?

``diagnose_perl`` trains one base-to-novel PERL run exactly as ``Session.base_to_novel`` does (``Session.fit``: the
same recipe, prompts, crop, loader seeds and training loop) and watches it without changing a number:

* **training curve**: the loss terms of every optimiser step (``TrainHistory.steps``) with the accuracy of each
  training batch (a forward hook reads the logits the loss was computed from), and, every few steps, accuracy and
  cross-entropy on all base training shots (evaluation transform) and accuracy on the base test images;
* **thought-token size**: the norm of each thought token z(k) against the residual stream at the injection depth J
  (mean token norm, and the CLS/EOS token there), and how much z(k) varies across inputs (``token_spread``: mean
  distance to the batch mean over the mean norm; 0 = the same token for every image or class), before and after
  training;
* **what the initialisation does before training**: cos(v0, vK) of image embeddings, cos(T0, TK) of class
  embeddings, step-0 (zero-shot) vs step-K accuracy and the share of changed predictions on the base test images;
  the same after training;
* **how far training moves the projectors**: ||theta_end - theta_0|| / ||theta_0|| per tensor.

Evaluating between steps draws no random number (evaluation loaders have their own generator, the evaluation
transform is deterministic) and PERL has no dropout, so the per-step losses equal those of a plain run; a test holds
that. ``last_layer_scale`` rescales the projectors' last Linear after the default initialisation: a *labelled
variant* (0 = thought tokens start at zero, so step K equals zero-shot CLIP before training), never the default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from perlkit import files
from perlkit.data import DatasetSplits, build_transform, make_loader, sample_fewshot, subsample_classes
from perlkit.engine import autocast_context
from perlkit.experiments.protocols import Session
from perlkit.experiments.store import RunSpec
from perlkit.methods import ClassSet, Method

DIAGNOSIS_FORMAT = "perlkit-perl-diagnosis/1"
TABLES = ("curve", "checkpoints", "norms", "shift", "parameters")


@dataclass
class PerlDiagnosis:
    """The measurements of one PERL run, as tidy tables (see the module docstring for each)."""

    spec: dict[str, Any]
    label: str
    variant: str
    curve: pd.DataFrame
    checkpoints: pd.DataFrame
    norms: pd.DataFrame
    shift: pd.DataFrame
    parameters: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the JSON cache."""
        out: dict[str, Any] = {"format": DIAGNOSIS_FORMAT, "spec": self.spec, "label": self.label,
                               "variant": self.variant}
        for name in TABLES:
            out[name] = getattr(self, name).to_dict(orient="records")
        return out

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> PerlDiagnosis:
        """Rebuild from ``to_dict`` output."""
        return cls(payload["spec"], payload["label"], payload["variant"],
                   **{name: pd.DataFrame(payload[name]) for name in TABLES})

    def summary(self) -> dict[str, float]:
        """Headline numbers: where training starts and ends, and what the initialisation did before it."""
        first, last = self.checkpoints.iloc[0], self.checkpoints.iloc[-1]
        init = self.shift.set_index("phase").loc["init"]
        init_norms = self.norms[self.norms.phase == "init"].groupby("modality")
        out = {
            "steps": float(last["step"]),
            "zeroshot_test": float(init["accuracy_step0"]),
            "init_test": float(first["test_accuracy"]),
            "final_test": float(last["test_accuracy"]),
            "init_train": float(first["train_accuracy"]),
            "final_train": float(last["train_accuracy"]),
            "init_train_loss": float(first["train_loss"]),
            "final_train_loss": float(last["train_loss"]),
            "init_cos_image": float(init["cos_image"]),
            "init_cos_text": float(init["cos_text"]),
            "init_changed_predictions": float(init["changed"]),
            # the whole projector parameter vector: ||theta_end - theta_0|| / ||theta_0||
            "relative_change": float((self.parameters["change_norm"] ** 2).sum() ** 0.5
                                     / (self.parameters["init_norm"] ** 2).sum() ** 0.5),
        }
        out.update({f"init_token_to_stream_{m}": float(v) for m, v in init_norms["token_to_stream"].mean().items()})
        out.update({f"init_token_spread_{m}": float(v) for m, v in init_norms["token_spread"].mean().items()})
        return out


# ---------------------------------------------------------------------------------------------- measurements
def _eval_loader(session: Session, items: Sequence, batch_size: int | None = None):  # noqa: ANN202 - a DataLoader
    return make_loader(items, build_transform(session.backbone.image_size, train=False),
                       batch_size or session.profile.eval_batch_size, shuffle=False,
                       num_workers=session.profile.num_workers)


@torch.no_grad()
def _accuracy_and_loss(method: Method, loader, classes: ClassSet) -> tuple[float, float]:  # noqa: ANN001
    """Top-1 (percent) and mean cross-entropy of the method's own logits; restores the method's mode."""
    was_training = method.training
    method.eval()
    device = method.backbone.device
    with autocast_context(device):
        classifier = method.classifier(classes, "base")
    correct, total, loss = 0, 0, 0.0
    for images, labels in loader:
        with autocast_context(device):
            logits = method.logits(images.to(device), classifier).float().cpu()
        correct += int((logits.argmax(-1) == labels).sum())
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        total += labels.numel()
    method.train(was_training)
    return 100.0 * correct / total, loss / total


def _stream_tokens(hidden: torch.Tensor, readout: torch.Tensor, modality: str) -> torch.Tensor:
    """Per-token norms of the residual stream; text keeps only positions up to each row's EOS (the real tokens)."""
    norms = hidden.float().norm(dim=-1)
    if modality == "vision":
        return norms.flatten()
    positions = torch.arange(hidden.shape[1], device=hidden.device)
    return norms[positions[None, :] <= readout[:, None]]


@torch.no_grad()
def thought_token_norms(method: Method, images: torch.Tensor, classes: ClassSet) -> list[dict[str, Any]]:
    """Norm of each thought token z(k) against the residual stream at the injection depth (first depth J)."""
    backbone = method.backbone
    split = method.config.depths[0]
    per_call = len(method.config.depths)
    rows = []
    for modality in method.active:
        x = images if modality == "vision" else classes.token_ids
        state = backbone.base(modality, x, split)
        h0 = backbone.refine(modality, state, split)
        tokens: list[torch.Tensor] = []
        record = tokens.append
        hooks = [m.register_forward_hook(lambda _m, _a, out, record=record: record(out.detach()))
                 for m in method.projectors[modality]]
        try:
            method.reason(modality, state, h0)
        finally:
            for hook in hooks:
                hook.remove()
        stream = _stream_tokens(state.hidden, state.readout, modality).mean()
        readout = backbone.readout(state.hidden, state.readout).float().norm(dim=-1).mean()
        for index, token in enumerate(tokens[::per_call]):  # one token per step (first depth of a multi-depth loop)
            token = token.float()
            norm = token.norm(dim=-1).mean()
            spread = (token - token.mean(0)).norm(dim=-1).mean()  # how much z(k) depends on the input at all
            rows.append({"modality": modality, "step": index + 1, "token_norm": float(norm),
                         "stream_norm": float(stream), "readout_norm": float(readout),
                         "pooled_norm": float(h0.float().norm(dim=-1).mean()),
                         "token_to_stream": float(norm / stream), "token_to_readout": float(norm / readout),
                         "token_spread": float(spread / norm) if norm > 0 else 0.0})
    return rows


@torch.no_grad()
def embedding_shift(method: Method, loader, classes: ClassSet) -> dict[str, float]:  # noqa: ANN001
    """Step 0 (zero-shot) vs step K: cos(v0, vK), cos(T0, TK), both accuracies and the share of changed predictions."""
    backbone = method.backbone
    split = method.config.depths[0]
    device = backbone.device
    was_training = method.training
    method.eval()
    with autocast_context(device):
        texts = method.step_classifiers(classes)
    cos_text = float((texts[0].float() * texts[-1].float()).sum(-1).mean())
    cos_image, correct0, correctk, changed, total = 0.0, 0, 0, 0, 0
    for images, labels in loader:
        images = images.to(device)
        with autocast_context(device):
            state = backbone.base("vision", images, split)
            h0 = backbone.refine("vision", state, split)
            hk = method.reason("vision", state, h0)[-1] if "vision" in method.active else h0
            v0, vk = backbone.project("vision", h0), backbone.project("vision", hk)
            logits = method.step_logits(images, texts)
        cos_image += float(F.cosine_similarity(v0.float(), vk.float(), dim=-1).sum())
        first, last = logits[0].argmax(-1).cpu(), logits[-1].argmax(-1).cpu()
        correct0 += int((first == labels).sum())
        correctk += int((last == labels).sum())
        changed += int((first != last).sum())
        total += labels.numel()
    method.train(was_training)
    return {"cos_image": cos_image / total, "cos_text": cos_text, "accuracy_step0": 100.0 * correct0 / total,
            "accuracy_stepK": 100.0 * correctk / total, "changed": 100.0 * changed / total}


def _scale_last_layer(method: Method, scale: float) -> None:
    """Multiply each projector's last Linear (W2, b2) by ``scale``: the labelled initialisation variant."""
    with torch.no_grad():
        for modules in method.projectors.values():
            for projector in modules:
                projector[-1].weight.mul_(scale)
                projector[-1].bias.mul_(scale)


# ---------------------------------------------------------------------------------------------- the run
def _total_steps(session: Session, method: Method, spec: RunSpec, train_images: int) -> int:
    cfg = session.train_config(method, spec)
    per_epoch = -(-train_images // cfg.batch_size)
    total = cfg.epochs * per_epoch
    return min(total, cfg.max_steps) if cfg.max_steps else total


def _cache_path(session: Session, spec: RunSpec, every: int, scale: float):  # noqa: ANN202 - a Path
    code = files.code_fingerprint([__file__])
    blob = json.dumps([spec.to_dict(), session.fingerprint(spec), code, every, scale], sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    name = f"perl-{spec.dataset}-s{spec.seed}-{digest}.json"
    return files.cache_root() / "diagnosis" / session.profile.store_name / name


def diagnose_perl(
    session: Session, spec: RunSpec, every: int | None = None, last_layer_scale: float = 1.0, recompute: bool = False,
    norm_images: int = 64,
) -> PerlDiagnosis:
    """Train one base-to-novel PERL run as the protocol does and measure it (module docstring); cached as JSON.

    ``every``: evaluate on all base training shots and base test images every this many steps (default: about ten
    evaluations). ``last_layer_scale`` != 1 is a labelled variant of the initialisation, never the paper's default.
    """
    if spec.kind != "b2n" or spec.method != "perl":
        raise ValueError(f"diagnose_perl needs a base-to-novel PERL spec, got kind={spec.kind!r}, "
                         f"method={spec.method!r}")
    path = _cache_path(session, spec, every or 0, last_layer_scale)
    if not recompute and path.is_file():
        try:
            payload = json.loads(path.read_text())
            if payload.get("format") == DIAGNOSIS_FORMAT:
                return PerlDiagnosis.from_dict(payload)
        except (OSError, ValueError, KeyError):
            pass
    few = sample_fewshot(session.dataset(spec.dataset), spec.shots, spec.seed)
    base: DatasetSplits = subsample_classes(few, "base")
    method = session.build(spec)
    if last_layer_scale != 1.0:
        _scale_last_layer(method, last_layer_scale)
    changes = [f"last layer x{last_layer_scale:g}"] if last_layer_scale != 1.0 else []
    changes += [f"{k}={v}" for k, v in sorted({**spec.options, **spec.train_overrides}.items())]
    changes += [] if spec.protocol == "unified" else [f"protocol={spec.protocol}"]
    variant = f"variant: {', '.join(changes)}" if changes else "paper default (App. A)"
    classes = session.classes(method, base, spec.template, spec.protocol)
    train_eval, test_eval = _eval_loader(session, base.train), _eval_loader(session, base.test)
    norm_batch = next(iter(_eval_loader(session, base.test, norm_images)))[0].to(method.backbone.device)
    total = _total_steps(session, method, spec, len(base.train))
    every = every or max(1, total // 10)

    def measure(phase: str) -> tuple[list[dict], dict]:
        norms = [{"phase": phase, **row} for row in thought_token_norms(method, norm_batch, classes)]
        return norms, {"phase": phase, **embedding_shift(method, test_eval, classes)}

    init_norms, init_shift = measure("init")
    start = {name: p.detach().clone() for name, p in method.trainable_parameters()}
    checkpoints: list[dict[str, float]] = []
    batch_accuracy: list[float] = []
    calls = [0]

    def checkpoint(step: int) -> None:
        train_acc, train_loss = _accuracy_and_loss(method, train_eval, classes)
        test_acc, _ = _accuracy_and_loss(method, test_eval, classes)
        checkpoints.append({"step": step, "train_accuracy": train_acc, "train_loss": train_loss,
                            "test_accuracy": test_acc})

    def before_step(_module, _args) -> None:  # noqa: ANN001 - called by the engine's forward, after `calls` steps
        if calls[0] % every == 0:
            checkpoint(calls[0])

    def after_step(_module, args, out) -> None:  # noqa: ANN001
        labels = args[1]
        batch_accuracy.append(100.0 * float((out.logits.argmax(-1) == labels).float().mean()))
        calls[0] += 1

    hooks = [method.register_forward_pre_hook(before_step), method.register_forward_hook(after_step)]
    try:
        log = session.fit(method, base, spec)
    finally:
        for hook in hooks:
            hook.remove()
    if not checkpoints or checkpoints[-1]["step"] != len(log["steps"]):
        checkpoint(len(log["steps"]))
    end_norms, end_shift = measure("trained")
    parameters = []
    for name, p in method.trainable_parameters():
        before, after = start[name], p.detach()
        change, norm = float((after - before).norm()), float(before.norm())
        parameters.append({"name": name, "init_norm": norm, "final_norm": float(after.norm()), "change_norm": change,
                           "relative_change": change / norm if norm > 0 else float("nan")})  # LN bias starts at 0
    curve = pd.DataFrame(log["steps"])
    curve["batch_accuracy"] = batch_accuracy[: len(curve)]
    result = PerlDiagnosis(
        spec=spec.to_dict(), label=session.profile.label, variant=variant, curve=curve,
        checkpoints=pd.DataFrame(checkpoints), norms=pd.DataFrame(init_norms + end_norms),
        shift=pd.DataFrame([init_shift, end_shift]), parameters=pd.DataFrame(parameters),
    )
    try:
        files.atomic_write_json(path, result.to_dict())
    except OSError:  # an unwritable cache only costs time
        pass
    return result
