"""``perlkit bench``: what PERL and its rivals cost, measured side by side in one process on one machine.

PERL's cost model (reference section 6) is J + (K+1)(L-J) block evaluations per encoder, 32 against zero-shot's 12
at J=7, K=4 (2.67x). This module measures, for zero-shot CLIP, PERL at K = 1..5 and every registered rival, on one
shared frozen backbone with random weights of the profile's architecture (timing needs no real weights):

* training ms per image at batch 4 and 32 (forward, backward, optimiser step; the text side over all training classes
  on every step, as in real training);
* evaluation images per second, the way users evaluate: ``classifier`` once outside the timed loop, then ``logits``
  per batch;
* peak memory of each phase: CPU RSS (VmHWM, reset per phase through ``/proc/self/clear_refs``) and, on CUDA,
  ``torch.cuda.max_memory_allocated``;
* block evaluations counted by forward hooks on every residual block of both encoders (one image, one class);
* one PERL training step over 1,000 classes at batch 4, with and without ``text_chunk_size``.

Timed repeats are interleaved across methods (round robin, order reversed every other round) and summarised by
medians, so that load from other processes on a shared machine hits every method alike. The headline clock
(``timer``) is this process's CPU time on CPU (``time.process_time``: work done, blind to cores lost to other jobs;
the command line runs one torch thread on CPU unless ``--threads`` says otherwise, so it reads as single-core time) and
synchronised wall time on CUDA, where the steps run under bf16 autocast (``perlkit.engine.autocast_context``).
Wall-clock values are kept next to the CPU ones (``*_wall*`` keys).

Block evaluations count calls of each block's first LayerNorm (``ln_1``), so the readout-only last block of
``FrozenCLIP.run_to_readout`` (keys and values from every token, the query, MLP and output only at CLS/EOS) counts
as one evaluation, as in the paper's cost model; it is ~1/6 of a full block's work for zero-shot and PERL alike.

JSON schema (``perlkit-bench-v1``; keys of ``{batch: ...}`` mappings are batch sizes as strings)::

    schema, created (ISO time), git_commit, perlkit_version, torch_version, open_clip_version, python
    device ("cpu" | "cuda"), device_name, num_threads, timer ("process_cpu" | "wall"), profile, model,
    weights ("random"), quick (bool)
    settings: {train_batches, train_classes, train_repeats, warmup, eval_batch, eval_rounds, eval_classes,
               memory_classes, memory_batch, memory_chunk, memory_unchunked}
    num_layers (L), split (J), image_size, seconds (wall time of the bench)
    methods: {label: {
        method, options, trainable_params, error (null or the message of a method that failed),
        train_ms_per_image {batch: ms}, train_wall_ms_per_image {batch: ms}, train_step_ms_samples {batch: [ms]},
        eval_images_per_s, eval_ms_per_image, eval_wall_ms_per_image, eval_ms_per_image_samples [ms, ...],
        peak_rss_mb {"train": {batch: MB}, "eval": MB}, peak_rss_delta_mb (same shape, above the phase's start),
        cuda_max_allocated_mb (same shape, null on CPU),
        block_evaluations {eval_vision_per_image, eval_text_per_image, classifier_text_per_class,
                           classifier_vision, train_vision_per_image, train_text_per_class,
                           eval_vision_per_block [calls of block 0..L-1]},
        cost_model_blocks (J + (K+1)(L-J) for PERL, L for zero-shot, null for rivals)}}
    train_batch (the batch of the top-level summary: 4, PERL's recipe), train_ms_per_image {label: ms at train_batch}
    eval_images_per_s {label: images/s}
    perl_eval_over_zeroshot (median over rounds of PERL K=4's / zero-shot's eval time per image, same round),
    perl_eval_over_zeroshot_rounds [ratio, ...], perl_eval_over_zeroshot_of_medians,
    perl_eval_over_zeroshot_wall, perl_eval_over_zeroshot_wall_rounds (the same on the wall clock)
    block_evaluations {label: measured vision blocks per image at evaluation}
    cost_model {zeroshot: L, perl: J + (K+1)(L-J), ratio}
    memory_1000_classes: {classes, batch, text_tokens, runs: {"unchunked" | "chunk<N>": {
        text_chunk_size, peak_rss_mb, peak_rss_delta_mb, cuda_max_allocated_mb, seconds, error}}, skipped}
    notes [str, ...]

Labels: ``zeroshot``, ``perl`` (K=4, the paper's), ``perl-k1`` ... ``perl-k5`` (other K), and each rival's
registered name. Zero-shot has nothing to train: its training entries are empty and its ``train_ms_per_image`` null.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import gc
import json
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import open_clip
import torch
from tqdm.auto import tqdm

import perlkit
from perlkit.backbone import MODALITIES, FrozenCLIP, create_backbone
from perlkit.engine import _optimizer, autocast_context, recipe
from perlkit.files import REPO_DATA, atomic_write_json, device_name, git_commit
from perlkit.methods import ClassSet, Method, build_method, list_methods
from perlkit.methods.perl import PERLConfig

SCHEMA = "perlkit-bench-v1"
PROFILE_MODELS = {"mini": "mini-clip", "paper": "ViT-B-16"}
PERL_STEPS = (1, 2, 3, 4, 5)
PAPER_STEPS = 4
BENCH_DIR = REPO_DATA / "bench"

_ADJECTIVES = (
    "red", "small", "striped", "wild", "golden", "spotted", "giant", "common", "northern", "little",
    "black", "white", "great", "spiny", "grey", "long-tailed", "American", "African", "electric", "wooden",
)  # fmt: skip
_NOUNS = (
    "fox", "heron", "beetle", "terrier", "shark", "lizard", "owl", "spider", "crab", "monkey", "kettle", "piano",
    "umbrella", "canoe", "lamp", "tractor", "violin", "bucket", "helmet", "bridge", "teapot", "bicycle", "cannon",
    "necklace", "guitar", "jellyfish", "snail", "lobster", "pelican", "flamingo", "moth", "leopard", "rabbit",
    "hamster", "sloth", "jaguar", "orange", "mushroom", "pretzel", "bagel", "pizza", "volcano", "geyser",
    "lighthouse", "mailbox", "padlock", "sandal", "scarf", "thimble", "wallet",
)  # fmt: skip


# ------------------------------------------------------------------------------------------------ what to run
@dataclass(frozen=True)
class MethodSpec:
    """One column of the bench: a registered method with options, under a label."""

    label: str
    method: str
    options: dict[str, Any] = field(default_factory=dict)


def available_methods() -> list[str]:
    """Names ``--methods`` accepts: registered methods, plus ``perl-k<K>`` for one PERL depth of reasoning."""
    return sorted(set(list_methods()) | {f"perl-k{k}" for k in PERL_STEPS})


def resolve_methods(names: Sequence[str] | None = None) -> list[MethodSpec]:
    """Expand names into specs ('perl' means K = 1..5); unknown names raise with the available ones listed."""
    names = list(names) if names else list_methods()
    specs: dict[str, MethodSpec] = {}
    for name in names:
        match = re.fullmatch(r"perl-k(\d+)", name)
        if name == "perl":
            steps = list(PERL_STEPS)
        elif match:
            steps = [int(match.group(1))]
        elif name in list_methods():
            specs.setdefault(name, MethodSpec(name, name))
            continue
        else:
            raise ValueError(f"unknown method {name!r} for the bench; available: {', '.join(available_methods())}")
        for k in steps:
            label = "perl" if k == PAPER_STEPS else f"perl-k{k}"
            specs.setdefault(label, MethodSpec(label, "perl", {"steps": k}))
    order = {"zeroshot": 0, "perl": 1}
    return sorted(specs.values(), key=lambda s: (order.get(s.method, 2), s.options.get("steps", 0), s.label))


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one bench run; ``settings_for`` picks them per profile and ``--quick``."""

    train_batches: tuple[int, ...] = (4, 32)
    train_classes: int = 50
    train_repeats: int = 5
    warmup: int = 1
    eval_batch: int = 256
    eval_rounds: int = 7
    memory_classes: int = 1000
    memory_batch: int = 4
    memory_chunk: int = 100
    memory_unchunked: bool = True


def settings_for(profile: str, quick: bool, device: torch.device) -> BenchSettings:
    """Sizes that keep ``--quick`` to minutes on 2 CPU cores (ViT-B/16 on CPU gets fewer, smaller batches)."""
    cuda = device.type == "cuda"
    if profile == "mini":
        if quick:
            return BenchSettings(train_repeats=3, eval_batch=128, eval_rounds=5)
        return BenchSettings()
    if cuda:
        return BenchSettings(eval_batch=128, train_repeats=3 if quick else 10, eval_rounds=5 if quick else 10)
    if quick:  # ViT-B/16 on CPU: ~0.35 s a zero-shot image; the 1,000-class step alone would take minutes
        return BenchSettings(
            train_batches=(4,), train_classes=20, train_repeats=2, eval_batch=8, eval_rounds=3, memory_classes=0,
            memory_unchunked=False,
        )
    # an unchunked 1,000-class ViT-B/16 step needs ~30 GB in fp32: only the chunked one is run on CPU
    return BenchSettings(train_repeats=3, eval_batch=32, eval_rounds=3, memory_unchunked=False)


def synthetic_prompts(n: int) -> list[str]:
    """``n`` distinct ImageNet-like prompts ('a photo of a <adjective> <noun>.'), deterministic."""
    names = [f"{adj} {noun}" for noun in _NOUNS for adj in _ADJECTIVES]
    return [f"a photo of a {names[i % len(names)]}" + (f" {i // len(names)}" if i >= len(names) else "") + "."
            for i in range(n)]


# ------------------------------------------------------------------------------------------------ measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _proc_status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux), so each phase gets its own peak."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _release_memory() -> None:
    """Collect garbage and give freed heap back to the OS, so a phase's peak is not the previous phase's."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak CPU RSS and CUDA allocation of the code inside ``with``, in MB, and how far above its start."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_mb: float | None = None
        self.rss_delta_mb: float | None = None
        self.cuda_mb: float | None = None
        self.exact = True

    def __enter__(self) -> PeakMemory:
        _release_memory()
        _sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        self.exact = _reset_rss_peak()
        self._rss0 = _proc_status_kb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        _sync(self.device)
        peak = _proc_status_kb("VmHWM") if self.exact else None
        if peak is None:  # no /proc: the process-wide maximum, which never goes down
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.exact = False
        self.rss_mb = round(peak / 1024, 1)
        if self._rss0 is not None:
            self.rss_delta_mb = round((peak - self._rss0) / 1024, 1)
        if self.device.type == "cuda":
            self.cuda_mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)


class BlockCounter:
    """Counts evaluations of every residual block of both encoders, with forward hooks on their first LayerNorm."""

    def __init__(self, backbone: FrozenCLIP) -> None:
        self.backbone = backbone
        self.calls = {m: [0] * len(backbone.blocks(m)) for m in MODALITIES}
        self._handles: list[Any] = []

    def __enter__(self) -> BlockCounter:
        for modality in MODALITIES:
            for index, block in enumerate(self.backbone.blocks(modality)):
                # ln_1 runs once per block evaluation, in open_clip's forward, perlkit's and the readout-only one
                module = getattr(block, "ln_1", block)
                self._handles.append(module.register_forward_hook(self._hook(modality, index)))
        return self

    def _hook(self, modality: str, index: int) -> Callable[..., None]:
        def count(*_: Any) -> None:
            self.calls[modality][index] += 1

        return count

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def total(self, modality: str) -> int:
        """Block evaluations of one encoder inside the ``with``."""
        return sum(self.calls[modality])


def cost_model_blocks(spec: MethodSpec, num_layers: int, split: int) -> int | None:
    """The paper's count: L for zero-shot, J + (K+1)(L-J) for single-depth PERL, None where it does not apply."""
    if spec.method == "zeroshot":
        return num_layers
    if spec.method == "perl" and isinstance(spec.options.get("split", split), int):
        j = spec.options.get("split", split)
        return j + (spec.options.get("steps", PAPER_STEPS) + 1) * (num_layers - j)
    return None


def count_block_evaluations(method: Method, image_size: int) -> dict[str, Any]:
    """Blocks run for one image and one class prompt: evaluation, classifier, and a steady-state training step."""
    backbone, device = method.backbone, method.backbone.device
    classes = method.class_set(["a photo of a spotted heron."])  # fresh: nothing cached yet
    image = torch.randn(1, 3, image_size, image_size, device=device)
    with torch.no_grad(), BlockCounter(backbone) as on_classifier:
        classifier = method.classifier(classes)
    with torch.no_grad(), BlockCounter(backbone) as on_logits:
        method.logits(image, classifier)
    counts: dict[str, Any] = {
        "eval_vision_per_image": on_logits.total("vision"),
        "eval_text_per_image": on_logits.total("text"),
        "classifier_text_per_class": on_classifier.total("text"),
        "classifier_vision": on_classifier.total("vision"),
        "eval_vision_per_block": on_logits.calls["vision"],
        "train_vision_per_image": None,
        "train_text_per_class": None,
    }
    if method.num_trainable():
        labels = torch.zeros(1, dtype=torch.long, device=device)
        method.train()
        method(image, labels, classes)  # a first step fills the frozen caches, as real training does
        with BlockCounter(backbone) as on_train:
            method(image, labels, classes)
        method.eval()
        counts["train_vision_per_image"] = on_train.total("vision")
        counts["train_text_per_class"] = on_train.total("text")
    return counts


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call; the CPU clock ignores time lost to other processes."""
    _sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def device_tag(device: torch.device) -> str:
    """Short file-name form of the device: 'cpu' or 'cuda-<gpu name>'."""
    if device.type != "cuda":
        return "cpu"
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def default_output(profile: str, model: str, device: torch.device, folder: Path = BENCH_DIR) -> Path:
    """<folder>/<profile>-<device>.json, with the model in the name when it is not the profile's own."""
    stem = profile if model == PROFILE_MODELS[profile] else f"{profile}-{model}"
    return folder / f"{stem}-{device_tag(device)}.json"


# ------------------------------------------------------------------------------------------------ the phases
class _Entry:
    """A built method with its result record; a failure in one phase marks it and drops it from later phases."""

    def __init__(self, spec: MethodSpec) -> None:
        self.spec = spec
        self.method: Method | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.classifier: Any = None
        self.record: dict[str, Any] = {
            "method": spec.method,
            "options": dict(spec.options),
            "trainable_params": None,
            "error": None,
            "train_ms_per_image": {},
            "train_wall_ms_per_image": {},
            "train_step_ms_samples": {},
            "eval_images_per_s": None,
            "eval_ms_per_image": None,
            "eval_ms_per_image_samples": [],
            "eval_wall_ms_per_image": None,
            "peak_rss_mb": {"train": {}, "eval": None},
            "peak_rss_delta_mb": {"train": {}, "eval": None},
            "cuda_max_allocated_mb": None,
            "block_evaluations": None,
            "cost_model_blocks": None,
        }

    @property
    def ok(self) -> bool:
        return self.method is not None and self.record["error"] is None

    @contextlib.contextmanager
    def guard(self, phase: str) -> Iterator[None]:
        """Record an exception of one phase as this method's error instead of stopping the bench."""
        try:
            yield
        except Exception as err:  # noqa: BLE001  (any failure of a method is data, not a crash of the bench)
            self.record["error"] = f"{phase}: {type(err).__name__}: {err}"


def _train_step(entry: _Entry, images: torch.Tensor, labels: torch.Tensor, classes: ClassSet) -> None:
    method, device = entry.method, entry.method.backbone.device
    with autocast_context(device):
        out = method(images, labels, classes)
    entry.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    entry.optimizer.step()


def _memory_step(
    backbone: FrozenCLIP, settings: BenchSettings, chunk: int, image_size: int, device: torch.device
) -> dict[str, Any]:
    """One PERL training step over ``memory_classes`` classes (fresh class set, so the frozen cache is built too)."""
    run: dict[str, Any] = {"text_chunk_size": chunk, "peak_rss_mb": None, "peak_rss_delta_mb": None,
                           "cuda_max_allocated_mb": None, "seconds": None, "error": None}
    try:
        method = build_method("perl", backbone, text_chunk_size=chunk).to(device)
        method.train()
        optimizer = _optimizer([p for _, p in method.trainable_parameters()], recipe(method))
        classes = method.class_set(synthetic_prompts(settings.memory_classes))
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(settings.memory_batch, 3, image_size, image_size, generator=gen).to(device)
        labels = torch.randint(0, settings.memory_classes, (settings.memory_batch,), generator=gen).to(device)
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            with autocast_context(device):
                out = method(images, labels, classes)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            _sync(device)
            run["seconds"] = round(time.perf_counter() - start, 2)
        run.update(peak_rss_mb=mem.rss_mb, peak_rss_delta_mb=mem.rss_delta_mb, cuda_max_allocated_mb=mem.cuda_mb)
        if mem.cuda_mb is not None:
            run["fits_16gb"] = mem.cuda_mb < 16 * 1024
    except Exception as err:  # noqa: BLE001  (an out-of-memory here is a result)
        run["error"] = f"{type(err).__name__}: {err}"
    finally:
        _release_memory()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return run


def run_bench(
    profile: str = "mini",
    methods: Sequence[str] | None = None,
    *,
    quick: bool = False,
    model: str | None = None,
    device: str | torch.device | None = None,
    settings: BenchSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure every method on one backbone and return the JSON-able record described in the module docstring."""
    if profile not in PROFILE_MODELS:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILE_MODELS)}")
    specs = resolve_methods(methods)
    model = model or PROFILE_MODELS[profile]
    if device is None:
        device = "cuda" if profile == "paper" and torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    settings = settings or settings_for(profile, quick, device)
    wall = time.perf_counter()

    torch.manual_seed(0)
    backbone = create_backbone(model, None, device=device)
    # the per-image cost is the vision encoder's: L is its depth (ViT-L/14: 24, though its text tower has 12)
    num_layers, split, image_size = backbone.depth("vision"), PERLConfig.split, backbone.image_size
    if split >= num_layers:
        split = num_layers // 2
        specs = [replace(s, options={**s.options, "split": split}) if s.method == "perl" else s for s in specs]
    gen = torch.Generator().manual_seed(0)
    prompts = synthetic_prompts(settings.train_classes)
    batches = {
        b: (
            torch.randn(b, 3, image_size, image_size, generator=gen).to(device),
            torch.randint(0, settings.train_classes, (b,), generator=gen).to(device),
        )
        for b in settings.train_batches
    }
    eval_images = torch.randn(settings.eval_batch, 3, image_size, image_size, generator=gen).to(device)

    entries = [_Entry(spec) for spec in specs]
    clock = 1 if device.type == "cpu" else 0  # index into _timed's (wall, cpu): CPU time on CPU, wall on CUDA
    n_train = settings.warmup + settings.train_repeats
    total = len(entries) * (3 + n_train * len(settings.train_batches) + settings.eval_rounds)
    total += 2 if settings.memory_classes else 0
    bar = tqdm(total=total, desc=f"bench {profile}", disable=not progress, file=sys.stderr, leave=False)

    # build, count blocks, compute each classifier once (outside every timed loop)
    for entry in entries:
        bar.set_postfix_str(f"{entry.spec.label}: build")
        with entry.guard("build"):
            torch.manual_seed(0)
            entry.method = build_method(entry.spec.method, backbone, **entry.spec.options).to(device).eval()
            entry.record["trainable_params"] = entry.method.num_trainable()
            entry.record["options"] = entry.method.config_dict()
            entry.record["cost_model_blocks"] = cost_model_blocks(entry.spec, num_layers, split)
            params = [p for _, p in entry.method.trainable_parameters()]
            if params:
                entry.optimizer = _optimizer(params, recipe(entry.method))
        if entry.ok:
            with entry.guard("block count"):
                entry.record["block_evaluations"] = count_block_evaluations(entry.method, image_size)
        bar.update(1)
        if entry.ok:
            bar.set_postfix_str(f"{entry.spec.label}: eval warm-up")
            with entry.guard("eval warm-up"), PeakMemory(device) as mem:
                classes = entry.method.class_set(prompts)
                with torch.no_grad(), autocast_context(device):
                    entry.classifier = entry.method.classifier(classes)
                    entry.method.logits(eval_images, entry.classifier)
            entry.record["peak_rss_mb"]["eval"] = mem.rss_mb
            entry.record["peak_rss_delta_mb"]["eval"] = mem.rss_delta_mb
            if mem.cuda_mb is not None:
                entry.record["cuda_max_allocated_mb"] = {"train": {}, "eval": mem.cuda_mb}
        bar.update(1)

    # training: warm-up steps measure memory, then timed rounds over all methods
    train_classes = {e.spec.label: e.method.class_set(prompts) for e in entries if e.ok}
    for entry in entries:
        for b, (images, labels) in batches.items():
            if entry.ok and entry.optimizer is not None:
                bar.set_postfix_str(f"{entry.spec.label}: train warm-up b{b}")
                with entry.guard(f"train warm-up b{b}"), PeakMemory(device) as mem:
                    entry.method.train()
                    for _ in range(settings.warmup):
                        _train_step(entry, images, labels, train_classes[entry.spec.label])
                entry.record["peak_rss_mb"]["train"][str(b)] = mem.rss_mb
                entry.record["peak_rss_delta_mb"]["train"][str(b)] = mem.rss_delta_mb
                if mem.cuda_mb is not None:
                    entry.record["cuda_max_allocated_mb"]["train"][str(b)] = mem.cuda_mb
            bar.update(settings.warmup)
        bar.update(1)
    samples: dict[str, dict[int, list[tuple[float, float]]]] = {e.spec.label: {b: [] for b in batches} for e in entries}
    for round_index in range(settings.train_repeats):
        order = entries if round_index % 2 == 0 else entries[::-1]
        for entry in order:
            for b, (images, labels) in batches.items():
                if entry.ok and entry.optimizer is not None:
                    bar.set_postfix_str(f"{entry.spec.label}: train b{b} round {round_index + 1}")
                    with entry.guard(f"train b{b}"):
                        classes = train_classes[entry.spec.label]
                        step = lambda e=entry, x=images, y=labels, c=classes: _train_step(e, x, y, c)
                        samples[entry.spec.label][b].append(_timed(step, device))
                bar.update(1)
    for entry in entries:
        if entry.method is not None:
            entry.method.eval()
        if entry.optimizer is None or entry.record["error"]:
            continue
        for b, pairs in samples[entry.spec.label].items():
            times, walls = [p[clock] for p in pairs], [p[0] for p in pairs]
            entry.record["train_step_ms_samples"][str(b)] = [round(1000 * t, 3) for t in times]
            entry.record["train_ms_per_image"][str(b)] = round(1000 * _median(times) / b, 3)
            entry.record["train_wall_ms_per_image"][str(b)] = round(1000 * _median(walls) / b, 3)

    # evaluation: classifiers are ready; rounds of one eval batch per method
    eval_times: dict[str, list[tuple[float, float]]] = {e.spec.label: [] for e in entries}
    for round_index in range(settings.eval_rounds):
        order = entries if round_index % 2 == 0 else entries[::-1]
        for entry in order:
            if entry.ok:
                bar.set_postfix_str(f"{entry.spec.label}: eval round {round_index + 1}")
                with entry.guard("eval"):

                    def evaluate(e: _Entry = entry) -> None:
                        with torch.no_grad(), autocast_context(device):
                            e.method.logits(eval_images, e.classifier)

                    wall_s, cpu_s = _timed(evaluate, device)
                    eval_times[entry.spec.label].append((wall_s / settings.eval_batch, cpu_s / settings.eval_batch))
            bar.update(1)
    for entry in entries:
        times, walls = [p[clock] for p in eval_times[entry.spec.label]], [p[0] for p in eval_times[entry.spec.label]]
        if entry.ok and times:
            entry.record["eval_ms_per_image_samples"] = [round(1000 * t, 4) for t in times]
            entry.record["eval_ms_per_image"] = round(1000 * _median(times), 4)
            entry.record["eval_images_per_s"] = round(1 / _median(times), 2)
            entry.record["eval_wall_ms_per_image"] = round(1000 * _median(walls), 4)

    # the 1,000-class PERL step, with and without chunking over classes
    memory: dict[str, Any] = {"classes": settings.memory_classes, "batch": settings.memory_batch, "runs": {},
                              "skipped": None, "text_tokens": None}
    if settings.memory_classes:
        tokens = backbone.tokenize(synthetic_prompts(settings.memory_classes))
        memory["text_tokens"] = int(tokens.argmax(dim=-1).max()) + 1
        variants = ([0] if settings.memory_unchunked else []) + [settings.memory_chunk]
        for chunk in variants:
            bar.set_postfix_str(f"perl {settings.memory_classes} classes, text_chunk_size={chunk}")
            key = "unchunked" if chunk == 0 else f"chunk{chunk}"
            memory["runs"][key] = _memory_step(backbone, settings, chunk, image_size, device)
            bar.update(1)
        if not settings.memory_unchunked:
            memory["skipped"] = "unchunked step not run on this device (it would not fit in memory)"
            bar.update(1)
    else:
        memory["skipped"] = "not run with these settings (ViT-B/16 on CPU with --quick: minutes per step)"
    bar.close()

    methods_out = {e.spec.label: e.record for e in entries}
    return _summary(methods_out, memory, profile, model, device, quick, settings, num_layers, split, image_size,
                    time.perf_counter() - wall, eval_times, clock)


def _summary(
    methods_out: dict[str, dict[str, Any]],
    memory: dict[str, Any],
    profile: str,
    model: str,
    device: torch.device,
    quick: bool,
    settings: BenchSettings,
    num_layers: int,
    split: int,
    image_size: int,
    seconds: float,
    eval_times: dict[str, list[tuple[float, float]]],
    clock: int,
) -> dict[str, Any]:
    """The top-level record: provenance, per-method records and the headline numbers the book plots."""
    headline = 4 if 4 in settings.train_batches else settings.train_batches[0]
    zs, perl = eval_times.get("zeroshot", []), eval_times.get("perl", [])
    ok = methods_out.get("zeroshot", {}).get("error") is None and methods_out.get("perl", {}).get("error") is None
    ok = ok and bool(zs) and len(zs) == len(perl)
    ratios = [p[clock] / z[clock] for p, z in zip(perl, zs, strict=True)] if ok else []
    wall_ratios = [p[0] / z[0] for p, z in zip(perl, zs, strict=True)] if ok else []
    model_perl = split + (PAPER_STEPS + 1) * (num_layers - split)
    notes = [
        "random weights of the profile's architecture: timing and memory do not depend on the weights",
        "eval: classifier computed once outside the timed loop, then logits per batch; median over rounds",
        "peak RSS covers the whole process (weights, Python, torch); the delta is above the phase's start",
    ]
    if device.type != "cuda":
        notes.append("CPU run: the CUDA path (bf16 autocast, max_memory_allocated) was not exercised")
    return {
        "schema": SCHEMA,
        "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "perlkit_version": perlkit.__version__,
        "torch_version": torch.__version__,
        "open_clip_version": getattr(open_clip, "__version__", "unknown"),
        "python": platform.python_version(),
        "device": device.type,
        "device_name": device_name(device),
        "num_threads": torch.get_num_threads(),
        "timer": "process_cpu" if clock == 1 else "wall",
        "profile": profile,
        "model": model,
        "weights": "random",
        "quick": quick,
        "settings": {**asdict(settings), "train_batches": list(settings.train_batches),
                     "eval_classes": settings.train_classes},
        "num_layers": num_layers,
        "split": split,
        "image_size": image_size,
        "seconds": round(seconds, 1),
        "methods": methods_out,
        "train_batch": headline,
        "train_ms_per_image": {k: v["train_ms_per_image"].get(str(headline)) for k, v in methods_out.items()},
        "eval_images_per_s": {k: v["eval_images_per_s"] for k, v in methods_out.items()},
        "perl_eval_over_zeroshot": round(statistics.median(ratios), 3) if ratios else None,
        "perl_eval_over_zeroshot_rounds": [round(r, 3) for r in ratios],
        "perl_eval_over_zeroshot_of_medians": (
            round(_median([p[clock] for p in perl]) / _median([z[clock] for z in zs]), 3) if ok else None
        ),
        "perl_eval_over_zeroshot_wall": round(statistics.median(wall_ratios), 3) if ok else None,
        "perl_eval_over_zeroshot_wall_rounds": [round(r, 3) for r in wall_ratios],
        "block_evaluations": {
            k: (v["block_evaluations"] or {}).get("eval_vision_per_image") for k, v in methods_out.items()
        },
        "cost_model": {"zeroshot": num_layers, "perl": model_perl, "ratio": round(model_perl / num_layers, 3)},
        "memory_1000_classes": memory,
        "notes": notes,
    }


# ------------------------------------------------------------------------------------------------ command line
def format_table(result: dict[str, Any]) -> str:
    """A plain-text summary of a bench record for the terminal."""
    batches = result["settings"]["train_batches"]
    lines = [
        f"perlkit bench: {result['profile']} profile, {result['model']} (random weights) on {result['device_name']}",
        f"{'method':<10}{'params':>10}" + "".join(f"{'train ms/img b' + str(b):>17}" for b in batches)
        + f"{'eval img/s':>12}{'blocks/img':>12}{'eval RSS MB':>13}",
    ]
    def order(label: str) -> tuple[int, int, str]:
        rec = result["methods"][label]
        return ({"zeroshot": 0, "perl": 1}.get(rec["method"], 2), rec["options"].get("steps", 0), label)

    for label in sorted(result["methods"], key=order):
        rec = result["methods"][label]
        if rec["error"]:
            lines.append(f"{label:<10} failed: {rec['error']}")
            continue
        train = "".join(f"{_fmt(rec['train_ms_per_image'].get(str(b))):>17}" for b in batches)
        blocks = (rec["block_evaluations"] or {}).get("eval_vision_per_image")
        lines.append(
            f"{label:<10}{rec['trainable_params']:>10,}{train}{_fmt(rec['eval_images_per_s']):>12}"
            f"{_fmt(blocks):>12}{_fmt(rec['peak_rss_mb']['eval']):>13}"
        )
    cm = result["cost_model"]
    lines.append(
        f"PERL (K=4) eval time / zero-shot: {_fmt(result['perl_eval_over_zeroshot'])} "
        f"(cost model {cm['perl']}/{cm['zeroshot']} = {cm['ratio']})"
    )
    memory = result["memory_1000_classes"]
    for key, run in memory["runs"].items():
        peak = run["cuda_max_allocated_mb"] if run["cuda_max_allocated_mb"] is not None else run["peak_rss_mb"]
        what = "CUDA max allocated" if run["cuda_max_allocated_mb"] is not None else "peak RSS"
        delta = f" (+{_fmt(run['peak_rss_delta_mb'])} MB above the step's start)" if run["peak_rss_delta_mb"] else ""
        lines.append(f"PERL train step, {memory['classes']} classes, batch {memory['batch']}, {key}: {what} "
                     f"{_fmt(peak)} MB{delta}" + (f" (error: {run['error']})" if run["error"] else ""))
    if memory["skipped"]:
        lines.append(f"1,000-class step: {memory['skipped']}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 1000 else f"{value:,.0f}"
    return str(value)


def _settings_from_args(args: argparse.Namespace, device: torch.device) -> BenchSettings:
    """The profile's settings with the command line's overrides applied."""
    settings = settings_for(args.profile, args.quick, device)
    overrides: dict[str, Any] = {}
    if args.train_batches:
        overrides["train_batches"] = tuple(args.train_batches)
    for name in ("train_classes", "train_repeats", "eval_batch", "eval_rounds", "memory_classes", "memory_chunk"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    return replace(settings, **overrides)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the bench, save its JSON (user cache; data/bench/ with --ship) and print a table (or the JSON)."""
    resolve_methods(args.methods)  # fail fast on a typo, before building anything
    device = torch.device(args.device or ("cuda" if args.profile == "paper" and torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA device here; use --device cpu")
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    result = run_bench(
        args.profile,
        args.methods,
        quick=args.quick,
        model=args.model,
        device=device,
        settings=_settings_from_args(args, device),
        progress=not args.no_progress,
    )
    if not args.no_save:
        from perlkit.files import cache_root, output_root

        chosen = output_root(args.out, args.ship, BENCH_DIR)  # --out and --ship together are refused
        folder = BENCH_DIR if args.ship else cache_root() / "bench"
        out = chosen if args.out else default_output(args.profile, result["model"], device, folder)
        atomic_write_json(out, result)
        print(f"perlkit bench: wrote {out}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(format_table(result))
    return 0


def add_bench_command(sub: argparse._SubParsersAction) -> None:
    """Register ``perlkit bench`` on the CLI's subparsers."""
    p = sub.add_parser("bench", help="time and memory of zero-shot, PERL (K=1..5) and the rivals, side by side")
    p.add_argument("--profile", default="mini", choices=sorted(PROFILE_MODELS))
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                   help=f"subset (default: all); 'perl' means K=1..5. Available: {', '.join(available_methods())}")
    p.add_argument("--quick", action="store_true", help="fewer repeats and smaller batches (minutes on 2 CPU cores)")
    p.add_argument("--json", action="store_true", help="print only the JSON record on stdout")
    p.add_argument("--model", default=None, help="override the profile's architecture (e.g. tiny-clip for tests)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the profile's)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 on CPU, for single-core timings; 0: torch's own default)")
    p.add_argument("--out", default=None, help="JSON path (default: <cache>/bench/<profile>-<device>.json)")
    p.add_argument("--ship", action="store_true", help="write into the repository's data/bench/ (maintainers)")
    p.add_argument("--no-save", action="store_true", help="do not write the JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sizes = p.add_argument_group("sizes (override the profile's defaults)")
    sizes.add_argument("--train-batches", type=int, nargs="+", default=None, metavar="B")
    sizes.add_argument("--train-classes", type=int, default=None)
    sizes.add_argument("--train-repeats", type=int, default=None)
    sizes.add_argument("--eval-batch", type=int, default=None)
    sizes.add_argument("--eval-rounds", type=int, default=None)
    sizes.add_argument("--memory-classes", type=int, default=None, help="0 skips the 1,000-class memory step")
    sizes.add_argument("--memory-chunk", type=int, default=None, help="text_chunk_size of the chunked memory step")
    p.set_defaults(func=cmd_bench)
