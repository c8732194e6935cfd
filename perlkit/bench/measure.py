"""Measuring: peak memory of a phase, block evaluations, and timed training steps and evaluation batches.

The training step is the engine's (``perlkit.engine.make_optimizer`` and ``train_step``), so the bench times what
training runs. Timed calls return (wall seconds, process CPU seconds): the CPU clock counts work done and is blind to
cores lost to other jobs on a shared machine, the wall clock is the one that matters on CUDA.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import torch

from perlkit.backbone import MODALITIES, FrozenCLIP, create_backbone
from perlkit.bench.record import BlockEvaluations, MemoryRun
from perlkit.engine import TrainConfig, autocast_context, make_optimizer, recipe, train_step
from perlkit.methods import Classifier, ClassSet, Method, build_method

#: (wall seconds, process CPU seconds) of one timed call
Timing = tuple[float, float]
T = TypeVar("T")


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work, so a clock read after it covers it (nothing to wait for on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timer_name(device: torch.device) -> str:
    """The headline clock: this process's CPU time on CPU, synchronised wall time on CUDA."""
    return "process_cpu" if device.type == "cpu" else "wall"


def clock(timings: Sequence[Timing], timer: str) -> list[float]:
    """The seconds of one clock ('wall' or 'process_cpu') out of (wall, CPU) timings."""
    return [t[1] if timer == "process_cpu" else t[0] for t in timings]


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values (a method that failed before it was timed)."""
    return statistics.median(values) if values else None


def timed(fn: Callable[[], Any], device: torch.device) -> Timing:
    """(wall seconds, process CPU seconds) of one call, synchronised on CUDA."""
    sync(device)
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - cpu


def round_robin(items: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """Each item once a round, the order reversed every other round, so load from other processes on a shared
    machine hits every item alike."""
    for round_index in range(rounds):
        for item in items if round_index % 2 == 0 else items[::-1]:
            yield round_index, item


def time_train_step(
    method: Method, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor, classes: ClassSet,
    grad_clip: float = 0.0,
) -> Timing:
    """One engine training step (forward under autocast, backward, optimiser step), timed."""
    return timed(lambda: train_step(method, optimizer, images, labels, classes, grad_clip=grad_clip),
                 method.backbone.device)


def time_logits(method: Method, classifier: Classifier, images: torch.Tensor) -> Timing:
    """One evaluation batch the way users evaluate: ``logits`` against a classifier computed beforehand."""
    device = method.backbone.device

    def evaluate() -> None:
        with torch.no_grad(), autocast_context(device):
            method.logits(images, classifier)

    return timed(evaluate, device)


# ------------------------------------------------------------------------------------------------ memory
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


def release_memory(device: torch.device | None = None) -> None:
    """Collect garbage and give freed heap (and CUDA cache) back, so a phase's peak is not the previous phase's."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    if device is not None and device.type == "cuda":
        sync(device)
        torch.cuda.empty_cache()


class PeakMemory:
    """Peak CPU RSS and CUDA allocation of the code inside ``with``, in MB, and how far above its start."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_mb: float | None = None
        self.rss_delta_mb: float | None = None
        self.cuda_mb: float | None = None
        self.exact = True

    def __enter__(self) -> PeakMemory:
        release_memory(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.exact = _reset_rss_peak()
        self._rss0 = _proc_status_kb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        sync(self.device)
        peak = _proc_status_kb("VmHWM") if self.exact else None
        if peak is None:  # no /proc: the process-wide maximum, which never goes down
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.exact = False
        self.rss_mb = round(peak / 1024, 1)
        if self._rss0 is not None:
            self.rss_delta_mb = round((peak - self._rss0) / 1024, 1)
        if self.device.type == "cuda":
            self.cuda_mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)


def memory_step(
    backbone: FrozenCLIP, prompts: Sequence[str], batch: int, chunk: int, image_size: int,
) -> MemoryRun:
    """One PERL training step over many classes (a fresh class set, so the frozen text cache is built too), with
    ``text_chunk_size=chunk``: its peak memory and seconds, or the error (an out-of-memory is a result)."""
    device = backbone.device
    run = MemoryRun(text_chunk_size=chunk)
    try:
        method = build_method("perl", backbone, text_chunk_size=chunk).to(device)
        method.train()
        cfg = recipe(method)
        optimizer = make_optimizer(method, cfg)
        classes = method.class_set(list(prompts))
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(batch, 3, image_size, image_size, generator=gen).to(device)
        labels = torch.randint(0, len(prompts), (batch,), generator=gen).to(device)
        with PeakMemory(device) as mem:
            wall_s, _ = time_train_step(method, optimizer, images, labels, classes, cfg.grad_clip)
        run.seconds = round(wall_s, 2)
        run.peak_rss_mb, run.peak_rss_delta_mb, run.cuda_max_allocated_mb = mem.rss_mb, mem.rss_delta_mb, mem.cuda_mb
        if mem.cuda_mb is not None:
            run.fits_16gb = mem.cuda_mb < 16 * 1024
    except Exception as err:  # noqa: BLE001  (an out-of-memory here is a result)
        run.error = f"{type(err).__name__}: {err}"
    finally:
        release_memory(device)
    return run


def optimizer_for(method: Method) -> tuple[torch.optim.Optimizer | None, TrainConfig]:
    """The engine's optimiser of a method's own recipe, or None for a method with nothing to train."""
    cfg = recipe(method)
    return (make_optimizer(method, cfg) if method.num_trainable() else None), cfg


# ------------------------------------------------------------------------------------------------ blocks, parameters
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


def block_evaluations(method: Method, image_size: int) -> BlockEvaluations:
    """Blocks run for one image and one class prompt: evaluation, classifier, and a steady-state training step."""
    backbone, device = method.backbone, method.backbone.device
    classes = method.class_set(["a photo of a spotted heron."])  # fresh: nothing cached yet
    image = torch.randn(1, 3, image_size, image_size, device=device)
    with torch.no_grad(), BlockCounter(backbone) as on_classifier:
        classifier = method.classifier(classes)
    with torch.no_grad(), BlockCounter(backbone) as on_logits:
        method.logits(image, classifier)
    counts = BlockEvaluations(
        eval_vision_per_image=on_logits.total("vision"), eval_text_per_image=on_logits.total("text"),
        classifier_text_per_class=on_classifier.total("text"), classifier_vision=on_classifier.total("vision"),
        eval_vision_per_block=on_logits.calls["vision"],
    )
    if method.num_trainable():
        labels = torch.zeros(1, dtype=torch.long, device=device)
        method.train()
        method(image, labels, classes)  # a first step fills the frozen caches, as real training does
        with BlockCounter(backbone) as on_train:
            method(image, labels, classes)
        method.eval()
        counts.train_vision_per_image = on_train.total("vision")
        counts.train_text_per_class = on_train.total("text")
    return counts


def count_block_evaluations(method: Method, image_size: int) -> dict[str, Any]:
    """``block_evaluations`` as the plain dict a bench file stores (what chapters 02 and 09 read)."""
    return asdict(block_evaluations(method, image_size))


def trainable_counts(methods: Sequence[str], model: str = "ViT-B-16") -> dict[str, int]:
    """Trainable parameters of each method on a model's architecture, exact, from random weights (no download)."""
    torch.manual_seed(0)
    backbone = create_backbone(model, None)
    return {name: build_method(name, backbone).num_trainable() for name in methods}
