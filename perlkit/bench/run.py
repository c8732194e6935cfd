"""``run_bench``: every method measured on one shared frozen backbone (random weights of the profile's architecture:
timing and memory do not depend on the weights), phase by phase, into one ``BenchRecord``.

The phases: build each method (block counts, its classifier computed once, evaluation memory); training (warm-up
steps measure memory, then timed rounds); evaluation rounds; one PERL step over 1,000 classes with and without
``text_chunk_size``. A method that fails in one phase records the error and sits out the later ones.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from perlkit.backbone import FrozenCLIP, create_backbone
from perlkit.bench.measure import (
    PeakMemory,
    Timing,
    block_evaluations,
    clock,
    median,
    memory_step,
    optimizer_for,
    round_robin,
    time_logits,
    time_train_step,
    timer_name,
)
from perlkit.bench.record import (
    NO_MEMORY_CLASSES,
    SCHEMA,
    BenchRecord,
    CostModel,
    MemoryRecord,
    MethodRecord,
    PhasePeaks,
    provenance_fields,
)
from perlkit.bench.spec import (
    HEADLINE_BATCH,
    PAPER_SPLIT,
    PAPER_STEPS,
    BenchSettings,
    MethodSpec,
    bench_split,
    cost_model_blocks,
    resolve_methods,
    settings_for,
    synthetic_prompts,
)
from perlkit.engine import autocast_context
from perlkit.methods import Classifier, ClassSet, Method, build_method
from perlkit.profiles import get_profile


@dataclass
class _Column:
    """One method of the bench: what was built for it and its record; a failure marks it for the later phases."""

    spec: MethodSpec
    record: MethodRecord
    method: Method | None = None
    optimizer: torch.optim.Optimizer | None = None
    grad_clip: float = 0.0
    classifier: Classifier | None = None
    classes: ClassSet | None = None  # the training classes

    @property
    def ok(self) -> bool:
        """Built, and no phase has failed yet."""
        return self.method is not None and self.record.error is None

    @property
    def trains(self) -> bool:
        """Still in the bench and has something to train."""
        return self.ok and self.optimizer is not None

    @contextlib.contextmanager
    def guard(self, phase: str) -> Iterator[None]:
        """Record an exception of one phase as this method's error instead of stopping the bench."""
        try:
            yield
        except Exception as err:  # noqa: BLE001  (any failure of a method is data, not a crash of the bench)
            self.record.error = f"{phase}: {type(err).__name__}: {err}"


@dataclass
class _Bench:
    """What every phase shares: the backbone, the inputs, the sizes, the columns and the progress bar."""

    backbone: FrozenCLIP
    settings: BenchSettings
    columns: list[_Column]
    split: int
    bar: Any
    prompts: list[str] = field(init=False)
    batches: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(init=False)
    eval_images: torch.Tensor = field(init=False)
    eval_times: dict[str, list[Timing]] = field(init=False)  # per label, per round: seconds per image

    def __post_init__(self) -> None:
        size, device, s = self.image_size, self.device, self.settings
        gen = torch.Generator().manual_seed(0)
        self.prompts = synthetic_prompts(s.train_classes)
        self.batches = {
            b: (torch.randn(b, 3, size, size, generator=gen).to(device),
                torch.randint(0, s.train_classes, (b,), generator=gen).to(device))
            for b in s.train_batches
        }
        self.eval_images = torch.randn(s.eval_batch, 3, size, size, generator=gen).to(device)
        self.eval_times = {c.spec.label: [] for c in self.columns}

    @property
    def device(self) -> torch.device:
        """Where everything runs."""
        return self.backbone.device

    @property
    def num_layers(self) -> int:
        """L: the per-image cost is the vision encoder's (ViT-L/14: 24 blocks, though its text tower has 12)."""
        return self.backbone.depth("vision")

    @property
    def image_size(self) -> int:
        """The architecture's input resolution."""
        return self.backbone.image_size

    @property
    def timer(self) -> str:
        """The clock of the headline numbers (``measure.timer_name``)."""
        return timer_name(self.device)


def _build_phase(bench: _Bench) -> None:
    """Build each method, count its blocks, and compute its classifier once (outside every timed loop), measuring
    the evaluation's memory on the way."""
    device = bench.device
    for col in bench.columns:
        bench.bar.set_postfix_str(f"{col.spec.label}: build")
        with col.guard("build"):
            torch.manual_seed(0)
            col.method = build_method(col.spec.method, bench.backbone, **col.spec.options).to(device).eval()
            col.record.trainable_params = col.method.num_trainable()
            col.record.options = col.method.config_dict()
            col.record.cost_model_blocks = cost_model_blocks(col.spec, bench.num_layers, bench.split)
            col.optimizer, cfg = optimizer_for(col.method)
            col.grad_clip = cfg.grad_clip
        if col.ok:
            with col.guard("block count"):
                col.record.block_evaluations = block_evaluations(col.method, bench.image_size)
        bench.bar.update(1)
        if col.ok:
            bench.bar.set_postfix_str(f"{col.spec.label}: eval warm-up")
            with col.guard("eval warm-up"), PeakMemory(device) as mem:
                classes = col.method.class_set(bench.prompts)
                with torch.no_grad(), autocast_context(device):
                    col.classifier = col.method.classifier(classes)
                    col.method.logits(bench.eval_images, col.classifier)
            col.record.peak_rss_mb.eval, col.record.peak_rss_delta_mb.eval = mem.rss_mb, mem.rss_delta_mb
            if mem.cuda_mb is not None:
                col.record.cuda_max_allocated_mb = PhasePeaks(eval=mem.cuda_mb)
        bench.bar.update(1)


def _train_phase(bench: _Bench) -> None:
    """Warm-up steps measure each method's training memory per batch size; then timed rounds over all methods."""
    settings, device, bar = bench.settings, bench.device, bench.bar
    for col in bench.columns:
        if col.ok:
            col.classes = col.method.class_set(bench.prompts)
    for col in bench.columns:
        for b, (images, labels) in bench.batches.items():
            if col.trains:
                bar.set_postfix_str(f"{col.spec.label}: train warm-up b{b}")
                with col.guard(f"train warm-up b{b}"), PeakMemory(device) as mem:
                    col.method.train()
                    for _ in range(settings.warmup):
                        time_train_step(col.method, col.optimizer, images, labels, col.classes, col.grad_clip)
                col.record.peak_rss_mb.train[str(b)] = mem.rss_mb
                col.record.peak_rss_delta_mb.train[str(b)] = mem.rss_delta_mb
                if mem.cuda_mb is not None:
                    col.record.cuda_max_allocated_mb.train[str(b)] = mem.cuda_mb
            bar.update(settings.warmup)
        bar.update(1)
    samples: dict[str, dict[int, list[Timing]]] = {c.spec.label: {b: [] for b in bench.batches} for c in bench.columns}
    for round_index, col in round_robin(bench.columns, settings.train_repeats):
        for b, (images, labels) in bench.batches.items():
            if col.trains:
                bar.set_postfix_str(f"{col.spec.label}: train b{b} round {round_index + 1}")
                with col.guard(f"train b{b}"):
                    timing = time_train_step(col.method, col.optimizer, images, labels, col.classes, col.grad_clip)
                    samples[col.spec.label][b].append(timing)
            bar.update(1)
    for col in bench.columns:
        if col.method is not None:
            col.method.eval()
        if col.optimizer is None or col.record.error:
            continue
        for b, timings in samples[col.spec.label].items():
            times, walls = clock(timings, bench.timer), clock(timings, "wall")
            col.record.train_step_ms_samples[str(b)] = [round(1000 * t, 3) for t in times]
            col.record.train_ms_per_image[str(b)] = round(1000 * median(times) / b, 3)
            col.record.train_wall_ms_per_image[str(b)] = round(1000 * median(walls) / b, 3)


def _eval_phase(bench: _Bench) -> None:
    """Rounds of one evaluation batch per method, against the classifiers the build phase computed."""
    batch = bench.settings.eval_batch
    for round_index, col in round_robin(bench.columns, bench.settings.eval_rounds):
        if col.ok:
            bench.bar.set_postfix_str(f"{col.spec.label}: eval round {round_index + 1}")
            with col.guard("eval"):
                wall_s, cpu_s = time_logits(col.method, col.classifier, bench.eval_images)
                bench.eval_times[col.spec.label].append((wall_s / batch, cpu_s / batch))
        bench.bar.update(1)
    for col in bench.columns:
        timings = bench.eval_times[col.spec.label]
        times, walls = clock(timings, bench.timer), clock(timings, "wall")
        if col.ok and times:
            col.record.eval_ms_per_image_samples = [round(1000 * t, 4) for t in times]
            col.record.eval_ms_per_image = round(1000 * median(times), 4)
            col.record.eval_images_per_s = round(1 / median(times), 2)
            col.record.eval_wall_ms_per_image = round(1000 * median(walls), 4)


def _memory_phase(bench: _Bench) -> MemoryRecord:
    """The PERL training step over ``memory_classes`` classes, unchunked (where it fits) and chunked."""
    settings = bench.settings
    memory = MemoryRecord(classes=settings.memory_classes, batch=settings.memory_batch)
    if not settings.memory_classes:
        memory.skipped = NO_MEMORY_CLASSES
        return memory
    prompts = synthetic_prompts(settings.memory_classes)
    memory.text_tokens = int(bench.backbone.tokenize(prompts).argmax(dim=-1).max()) + 1
    for chunk in ([0] if settings.memory_unchunked else []) + [settings.memory_chunk]:
        bench.bar.set_postfix_str(f"perl {settings.memory_classes} classes, text_chunk_size={chunk}")
        key = "unchunked" if chunk == 0 else f"chunk{chunk}"
        memory.runs[key] = memory_step(bench.backbone, prompts, settings.memory_batch, chunk, bench.image_size)
        bench.bar.update(1)
    if not settings.memory_unchunked:
        memory.skipped = "unchunked step not run on this device (it would not fit in memory)"
        bench.bar.update(1)
    return memory


def _perl_over_zeroshot(bench: _Bench) -> dict[str, Any]:
    """PERL (paper K) / zero-shot evaluation time: per round (same round, same load), and of the medians."""
    methods = {c.spec.label: c.record for c in bench.columns}
    zs, perl = bench.eval_times.get("zeroshot", []), bench.eval_times.get("perl", [])
    ok = all(label in methods and methods[label].error is None for label in ("zeroshot", "perl"))
    ok = ok and bool(zs) and len(zs) == len(perl)
    ratios = [p / z for p, z in zip(clock(perl, bench.timer), clock(zs, bench.timer), strict=True)] if ok else []
    wall_ratios = [p / z for p, z in zip(clock(perl, "wall"), clock(zs, "wall"), strict=True)] if ok else []
    of_medians = median(clock(perl, bench.timer)) / median(clock(zs, bench.timer)) if ok else None
    return {
        "perl_eval_over_zeroshot": round(statistics.median(ratios), 3) if ratios else None,
        "perl_eval_over_zeroshot_rounds": [round(r, 3) for r in ratios],
        "perl_eval_over_zeroshot_of_medians": round(of_medians, 3) if of_medians is not None else None,
        "perl_eval_over_zeroshot_wall": round(statistics.median(wall_ratios), 3) if wall_ratios else None,
        "perl_eval_over_zeroshot_wall_rounds": [round(r, 3) for r in wall_ratios],
    }


def _notes(device: torch.device) -> list[str]:
    notes = [
        "random weights of the profile's architecture: timing and memory do not depend on the weights",
        "eval: classifier computed once outside the timed loop, then logits per batch; median over rounds",
        "peak RSS covers the whole process (weights, Python, torch); the delta is above the phase's start",
    ]
    if device.type != "cuda":
        notes.append("CPU run: the CUDA path (bf16 autocast, max_memory_allocated) was not exercised")
    return notes


def _summarize(
    bench: _Bench, profile: str, model: str, quick: bool, memory: MemoryRecord, seconds: float
) -> BenchRecord:
    """The record: provenance, per-method records and the headline numbers the book plots."""
    methods = {c.spec.label: c.record for c in bench.columns}
    batches = bench.settings.train_batches
    headline = HEADLINE_BATCH if HEADLINE_BATCH in batches else batches[0]
    num_layers = bench.num_layers
    perl_blocks = cost_model_blocks(MethodSpec("perl", "perl", {"steps": PAPER_STEPS}), num_layers, bench.split)
    return BenchRecord(
        schema=SCHEMA, **provenance_fields(bench.device), timer=bench.timer, profile=profile, model=model,
        weights="random", quick=quick, settings=bench.settings, num_layers=num_layers, split=bench.split,
        image_size=bench.image_size, seconds=round(seconds, 1), methods=methods, train_batch=headline,
        train_ms_per_image={label: r.train_ms_per_image.get(str(headline)) for label, r in methods.items()},
        eval_images_per_s={label: r.eval_images_per_s for label, r in methods.items()},
        **_perl_over_zeroshot(bench),
        block_evaluations={label: r.block_evaluations.eval_vision_per_image if r.block_evaluations else None
                           for label, r in methods.items()},
        cost_model=CostModel(zeroshot=num_layers, perl=perl_blocks, ratio=round(perl_blocks / num_layers, 3)),
        memory_1000_classes=memory, notes=_notes(bench.device),
    )


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
    """Measure every method on one backbone and return the JSON-able record (``BenchRecord.to_json``)."""
    defaults = get_profile(profile)  # the profile's architecture and device; its weights are not used
    specs = resolve_methods(methods)
    model = model or defaults.model
    device = torch.device(device or defaults.device)
    settings = settings or settings_for(profile, quick, device)
    wall = time.perf_counter()

    torch.manual_seed(0)
    backbone = create_backbone(model, None, device=device)
    split = bench_split(backbone.depth("vision"))
    if split != PAPER_SPLIT:
        specs = [replace(s, options={**s.options, "split": split}) if s.method == "perl" else s for s in specs]
    columns = [_Column(spec, MethodRecord(method=spec.method, options=dict(spec.options))) for spec in specs]
    n_train = settings.warmup + settings.train_repeats
    total = len(columns) * (3 + n_train * len(settings.train_batches) + settings.eval_rounds)
    total += 2 if settings.memory_classes else 0
    bar = tqdm(total=total, desc=f"bench {profile}", disable=not progress, file=sys.stderr, leave=False)
    bench = _Bench(backbone, settings, columns, split, bar)

    _build_phase(bench)
    _train_phase(bench)
    _eval_phase(bench)
    memory = _memory_phase(bench)
    bar.close()
    return _summarize(bench, profile, model, quick, memory, time.perf_counter() - wall).to_json()
