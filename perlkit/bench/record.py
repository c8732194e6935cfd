"""The bench's JSON record (schema ``perlkit-bench-v1``) as typed dataclasses.

One place says what a bench file holds, so the writer (``run_bench``), the terminal table, chapter 09 and the tests
agree on it; ``to_json`` writes exactly the keys the committed files in ``data/bench/`` have, and ``read_record``
refuses a file with a missing or unknown key instead of guessing. Keys of ``{batch: ...}`` mappings are batch sizes
as strings, as JSON requires.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import torch

from perlkit.bench.spec import BenchSettings
from perlkit.files import REPO_DATA, provenance

SCHEMA = "perlkit-bench-v1"
#: the committed bench files (``perlkit bench --ship`` writes here; the user cache otherwise)
BENCH_DIR = REPO_DATA / "bench"
#: ``perlkit smoke --ship`` writes its records (another schema) into the same folder, named ``*-smoke[-quick].json``
SMOKE_MARK = "-smoke"
#: field metadata: leave the key out of the JSON when its value is None (keys that older files do not have)
OPTIONAL_KEY = {"omit_if_none": True}

T = TypeVar("T")


class RecordError(ValueError):
    """A bench file that does not have the schema's keys (or has others): named, never half read."""


@dataclass
class PhasePeaks:
    """Peak memory of one method's phases: training per batch size (MB) and evaluation (MB)."""

    train: dict[str, float | None] = field(default_factory=dict)
    eval: float | None = None


@dataclass
class BlockEvaluations:
    """Residual blocks run (forward hooks on every block's ``ln_1``) for one image and one class prompt."""

    eval_vision_per_image: int
    eval_text_per_image: int
    classifier_text_per_class: int
    classifier_vision: int
    eval_vision_per_block: list[int]  # calls of vision block 0..L-1 at evaluation
    train_vision_per_image: int | None = None  # None: nothing to train
    train_text_per_class: int | None = None


@dataclass
class MethodRecord:
    """What one column of the bench measured (zero-shot has nothing to train: its training entries stay empty)."""

    method: str
    options: dict[str, Any]
    trainable_params: int | None = None
    error: str | None = None  # the message of a phase that failed; later phases skip the method
    train_ms_per_image: dict[str, float] = field(default_factory=dict)
    train_wall_ms_per_image: dict[str, float] = field(default_factory=dict)
    train_step_ms_samples: dict[str, list[float]] = field(default_factory=dict)
    eval_images_per_s: float | None = None
    eval_ms_per_image: float | None = None
    eval_ms_per_image_samples: list[float] = field(default_factory=list)
    eval_wall_ms_per_image: float | None = None
    peak_rss_mb: PhasePeaks = field(default_factory=PhasePeaks)
    peak_rss_delta_mb: PhasePeaks = field(default_factory=PhasePeaks)  # above the phase's start
    cuda_max_allocated_mb: PhasePeaks | None = None  # None on CPU
    block_evaluations: BlockEvaluations | None = None
    cost_model_blocks: int | None = None  # J + (K+1)(L-J) for PERL, L for zero-shot, None for rivals


@dataclass
class MemoryRun:
    """One PERL training step over many classes, with or without ``text_chunk_size``."""

    text_chunk_size: int
    peak_rss_mb: float | None = None
    peak_rss_delta_mb: float | None = None
    cuda_max_allocated_mb: float | None = None
    seconds: float | None = None
    error: str | None = None  # an out-of-memory is a result
    fits_16gb: bool | None = field(default=None, metadata=OPTIONAL_KEY)  # CUDA only


@dataclass
class MemoryRecord:
    """The 1,000-class PERL step (``memory_1000_classes``): runs keyed 'unchunked' or 'chunk<N>'."""

    classes: int
    batch: int
    text_tokens: int | None = None
    runs: dict[str, MemoryRun] = field(default_factory=dict)
    skipped: str | None = None  # why a run (or all of them) was not made, as the run wrote it

    @property
    def skip_reason(self) -> str | None:
        """Why a run is missing, for tables: a record made with ``memory_classes = 0`` says so from its settings
        (records written before this property carry a reason that named only the CPU ``--quick`` default)."""
        if not self.classes:
            return NO_MEMORY_CLASSES
        return self.skipped


#: why a record has no memory step: its settings asked for none
NO_MEMORY_CLASSES = ("not measured: this record's settings set memory_classes to 0 (the default of --quick for "
                     "ViT-B/16 on CPU, and of records that time other parts)")


@dataclass
class CostModel:
    """The paper's block count per image: L for zero-shot, J + (K+1)(L-J) for PERL at its paper K."""

    zeroshot: int
    perl: int
    ratio: float


@dataclass
class BenchRecord:
    """One ``perlkit bench`` run: provenance, settings, one ``MethodRecord`` a label, and the headline numbers."""

    schema: str
    # provenance: ``perlkit.files.provenance`` under the bench's keys, plus the bench's own (see ``provenance_fields``)
    created: str
    git_commit: str
    perlkit_version: str
    torch_version: str
    open_clip_version: str
    python: str
    device: str  # "cpu" | "cuda"
    device_name: str
    num_threads: int
    timer: str  # "process_cpu" | "wall": the clock of the headline numbers
    profile: str
    model: str
    weights: str  # "random"
    quick: bool
    settings: BenchSettings
    num_layers: int  # L (of the vision encoder)
    split: int  # J
    image_size: int
    seconds: float  # wall time of the whole bench
    methods: dict[str, MethodRecord]
    train_batch: int  # the batch of the top-level ``train_ms_per_image``
    train_ms_per_image: dict[str, float | None]
    eval_images_per_s: dict[str, float | None]
    perl_eval_over_zeroshot: float | None  # median over rounds of PERL's / zero-shot's eval time, same round
    perl_eval_over_zeroshot_rounds: list[float]
    perl_eval_over_zeroshot_of_medians: float | None
    perl_eval_over_zeroshot_wall: float | None
    perl_eval_over_zeroshot_wall_rounds: list[float]
    block_evaluations: dict[str, int | None]  # measured vision blocks per image at evaluation
    cost_model: CostModel
    memory_1000_classes: MemoryRecord
    notes: list[str]
    host_cpus: int | None = field(default=None, metadata=OPTIONAL_KEY)  # from ``files.provenance``; newer files

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data with the schema's keys (``settings`` also names ``eval_classes``: the training's)."""
        data = _to_json(self)
        data["settings"]["eval_classes"] = self.settings.train_classes
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchRecord:
        """A record from plain JSON data; a missing or unknown key raises ``RecordError``."""
        settings = dict(data.get("settings") or {})
        if settings.pop("eval_classes", None) != settings.get("train_classes"):
            raise RecordError("settings: eval_classes missing or not train_classes (the bench evaluates on those)")
        return _from_json(cls, {**data, "settings": settings})


def provenance_fields(device: torch.device) -> dict[str, Any]:
    """``perlkit.files.provenance`` under the keys bench files have always used, plus what only the bench records:
    the device type (``device``; provenance's ``device`` is its name) and torch's thread count."""
    common = provenance(device)
    return {
        "created": common["created"], "git_commit": common["git_commit"], "perlkit_version": common["perlkit_version"],
        "torch_version": common["torch"], "open_clip_version": common["open_clip"], "python": common["python"],
        "device": device.type, "device_name": common["device"], "host_cpus": common["host_cpus"],
        "num_threads": torch.get_num_threads(),
    }


def read_record(path: str | os.PathLike) -> BenchRecord:
    """A bench JSON file as a typed record; a file that is not one says which key is wrong."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise RecordError(f"{path}: not a {SCHEMA} record")
    try:
        return BenchRecord.from_json(data)
    except RecordError as err:
        raise RecordError(f"{path}: {err}") from None


def load_records(folder: str | os.PathLike = BENCH_DIR) -> dict[str, BenchRecord]:
    """Every bench file of a folder by file name, sorted (a missing folder holds none: an installed perlkit).

    Smoke records (``perlkit smoke --ship``) share the folder and are left out by name; any other file that is not
    a bench record is refused by name, never skipped."""
    return {path.name: read_record(path) for path in sorted(Path(folder).glob("*.json"))
            if SMOKE_MARK not in path.stem}


# ------------------------------------------------------------------------------------------------ JSON <-> dataclass
def _to_json(value: Any) -> Any:
    """Dataclasses as dicts of their fields (keys marked ``OPTIONAL_KEY`` left out when None), tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in fields(value)
                if not (f.metadata.get("omit_if_none") and getattr(value, f.name) is None)}
    if isinstance(value, dict):
        return {str(key): _to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    return value


def _from_json(cls: type[T], data: Any) -> T:
    """The dataclass ``cls`` from JSON data, nested records typed by the field annotations."""
    if not isinstance(data, dict):
        raise RecordError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RecordError(f"{cls.__name__}: unknown key(s) {unknown}")
    missing = sorted(name for name, f in known.items() if name not in data and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise RecordError(f"{cls.__name__}: missing key(s) {missing}")
    return cls(**{name: _typed(hints[name], value) for name, value in data.items()})


def _typed(hint: Any, value: Any) -> Any:
    """``value`` as the annotation ``hint`` says: nested dataclasses built, other values kept as JSON has them."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _typed(next(arg for arg in args if arg is not type(None)), value)
    if dataclasses.is_dataclass(hint):
        return _from_json(hint, value)
    if origin is dict:
        return {key: _typed(args[1], item) for key, item in value.items()}
    if origin in (list, tuple):
        items = [_typed(args[0], item) for item in value]
        return tuple(items) if origin is tuple else items
    return value
