"""Sweeps beyond one process: the grid's pending runs as one submitit job array, on SLURM or as local processes,
all writing the same result store.

Three steps, one function each: ``plan_grid`` (which runs are pending, in which chunks, with which submitit
parameters, and what they cost at the measured rates), ``submit_grid`` (starts the array) and ``wait_grid`` (waits,
then reads the outcome back from the store); ``run_grid`` chains them. Each task runs its chunk through
``Session.run`` (``run_chunk``), so a result is what a serial sweep gives: same spec, same code, same numbers,
whatever the executor, the order or the process. The store's claim lock keeps two tasks (or two submissions) from
computing a run twice, and a result is written last and atomically, so a task that dies leaves nothing half-done and
the same command run again submits exactly the runs still missing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from perlkit.bench.record import BENCH_DIR  # the measured rates of the estimate: bench and smoke records
from perlkit.data import DG_TARGETS, PUBLISHED_COUNTS, XD_TARGETS, Expected
from perlkit.data.registry import EXPECTED_FILE
from perlkit.engine import recipe
from perlkit.experiments.protocols import Session
from perlkit.experiments.store import ResultStore, RunSpec
from perlkit.experiments.sweeps import (
    clear_failure,
    failure_path,
    open_store_session,
    record_failure,
    run_state,
    sweep_serially,
)
from perlkit.files import cache_root
from perlkit.methods import get_method_class
from perlkit.profiles import Profile

EXECUTORS = ("serial", "local", "slurm")
#: SLURM's default MaxArraySize is 1001, so the default chunk keeps an array at or below 1,000 tasks
MAX_ARRAY_TASKS = 1000
#: runs per SLURM task by default: a task loads the model once, then amortises it over a few runs
DEFAULT_SLURM_CHUNK = 4


@dataclass(frozen=True)
class ExecutorOptions:
    """What the submitter asks of the cluster or the local machine; None takes the default the plan states."""

    max_parallel: int | None = None  # tasks at once: SLURM's array parallelism, or local processes
    chunk: int | None = None  # runs per task
    partition: str | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    time_min: int = 720  # wall-clock limit of one task
    mem_gb: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_parallel", "chunk", "cpus_per_task", "time_min", "mem_gb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.gpus_per_task is not None and self.gpus_per_task < 0:
            raise ValueError(f"--gpus-per-task must be >= 0, got {self.gpus_per_task}")


# ---------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class Rates:
    """Measured images per second on one device, per method: training (per batch size) and evaluation."""

    device: str  # "cuda" | "cpu"
    device_name: str
    sources: tuple[str, ...]
    train: dict[str, dict[int, float]]  # method -> batch size -> images/s (0: measured at any batch, smoke runs)
    eval: dict[str, float]

    @property
    def gpu(self) -> bool:
        """Whether the rates were measured on a GPU (else the hours are hours on that CPU)."""
        return self.device == "cuda"

    def train_rate(self, method: str, batch: int) -> tuple[float, bool]:
        """Training images/s of a method at the measured batch size closest to ``batch``; a method without a
        measurement takes the slowest measured one's rate (second value False)."""
        measured = self.train.get(method)
        if measured:
            return measured[min(measured, key=lambda b: 0 if b == 0 else abs(b - batch))], True
        return min(min(r.values()) for r in self.train.values() if r), False

    def eval_rate(self, method: str) -> tuple[float, bool]:
        """Evaluation images/s of a method, or the slowest measured method's (second value False)."""
        if method in self.eval:
            return self.eval[method], True
        return min(self.eval.values()), False


def _record_rates(record: Mapping[str, Any]) -> dict[str, tuple[dict[int, float], float | None]]:
    """Per method (training rates per batch, evaluation rate) of one bench or smoke record."""
    rates: dict[str, tuple[dict[int, float], float | None]] = {}
    if record.get("schema") == "perlkit-smoke-v1":  # end to end, data loading included; summed over its runs
        for method, runs in (record.get("runs") or {}).items():
            ok = [r for r in runs.values() if isinstance(r, dict) and r.get("ok")]
            train = [sum(r.get(k) or 0 for r in ok) for k in ("train_images", "train_seconds")]
            evals = [sum(r.get(k) or 0 for r in ok) for k in ("eval_images", "eval_seconds")]
            rates[method] = ({0: train[0] / train[1]} if all(train) else {},
                             evals[0] / evals[1] if all(evals) else None)
        return rates
    for method, m in (record.get("methods") or {}).items():  # perlkit bench: the model's steady-state cost
        if not isinstance(m, dict) or m.get("error"):
            continue
        train = {int(b): 1000.0 / ms for b, ms in (m.get("train_ms_per_image") or {}).items() if ms}
        rates[method] = (train, 1000.0 / m["eval_ms_per_image"] if m.get("eval_ms_per_image") else None)
    return rates


def measured_rates(profile: Profile, folder: Path = BENCH_DIR) -> Rates | None:
    """The profile's measured rates from ``<folder>/<profile>-*.json`` on its model: GPU records when any exist,
    else CPU ones; bench records before smoke records, each method from the first record that measured it."""
    records = []
    for path in sorted(Path(folder).glob(f"{profile.name}-*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("model") == profile.model:
            records.append((path, record))
    chosen = [pr for pr in records if pr[1].get("device") == "cuda"] or [
        pr for pr in records if pr[1].get("device") == "cpu"]
    chosen.sort(key=lambda pr: pr[1].get("schema") != "perlkit-bench-v1")
    train: dict[str, dict[int, float]] = {}
    evals: dict[str, float] = {}
    used = []
    for path, record in chosen:
        found = False
        for method, (t, e) in _record_rates(record).items():
            if t and method not in train:
                train[method], found = t, True
            if e and method not in evals:
                evals[method], found = e, True
        if found:
            used.append((path, record))
    if not train or not evals:
        return None
    names = sorted({str(r.get("device_name") or r.get("device")) for _, r in used})
    return Rates(used[0][1]["device"], "; ".join(names), tuple(p.name for p, _ in used), train, evals)


def dataset_sizes(profile: Profile) -> tuple[dict[str, Expected], str]:
    """Class counts and split sizes for the estimate, read from no image: the data root's ``perlkit_expected.json``
    when it has one (worlds perlkit writes), the mini world's own sizes, else CoOp's published sizes."""
    sizes = dict(PUBLISHED_COUNTS)
    table, source = None, "published CoOp counts (perlkit.data.PUBLISHED_COUNTS)"
    if profile.data_root:
        path = Path(profile.data_root).expanduser() / EXPECTED_FILE
        if path.is_file():
            table, source = json.loads(path.read_text()), f"{path}, published CoOp counts elsewhere"
    elif profile.name == "mini":  # the mini profile's default root: its sizes are known without building it
        from perlkit.mini.build import expected_counts

        table, source = expected_counts(), "the mini world's sizes (perlkit.mini.build.expected_counts)"
    for key, entry in (table or {}).items():
        if key in sizes:
            sizes[key] = Expected(**entry)
    return sizes, source


@dataclass(frozen=True)
class RunCost:
    """A run's work in images: training images seen (few-shot images x epochs) and test images evaluated."""

    train_images: int
    eval_images: int
    batch_size: int


def run_cost(spec: RunSpec, sizes: Mapping[str, Expected]) -> RunCost:
    """The images a run trains on (16 shots of its base classes, or of ImageNet's classes, times its recipe's epochs)
    and evaluates (every test image of base and novel, or of ImageNet and the 14 transfer targets)."""
    method = get_method_class(spec.method)
    task = "cross" if spec.kind == "imagenet_transfer" else "b2n"
    cfg = recipe(method, spec.protocol, spec.dataset, task, **spec.train_overrides)
    source = sizes[spec.dataset]
    per_class = min(spec.shots, source.train // max(source.num_classes, 1)) or spec.shots
    if spec.kind == "imagenet_transfer":
        train = per_class * source.num_classes
        evals = sum(sizes[name].test for name in (spec.dataset, *XD_TARGETS, *DG_TARGETS))
    else:
        train = per_class * math.ceil(source.num_classes / 2)
        evals = source.test
    seen = 0 if spec.method == "zeroshot" else train * cfg.epochs  # zero-shot CLIP trains nothing
    if cfg.max_steps:
        seen = min(seen, cfg.max_steps * cfg.batch_size)
    return RunCost(seen, evals, cfg.batch_size)


def _rate_method(spec: RunSpec) -> str:
    """The bench name of a run's method: PERL with K steps was timed as ``perl-k<K>``."""
    steps = spec.options.get("steps")
    return f"perl-k{steps}" if spec.method == "perl" and steps not in (None, 4) else spec.method


def run_seconds(spec: RunSpec, cost: RunCost, rates: Rates) -> tuple[float, bool]:
    """Estimated seconds of one run at the measured rates, and whether its method's own rates were measured."""
    name = _rate_method(spec)
    name = name if name in rates.eval or name in rates.train else spec.method
    train_rate, own_train = rates.train_rate(name, cost.batch_size)
    eval_rate, own_eval = rates.eval_rate(name)
    seconds = (cost.train_images / train_rate if cost.train_images else 0.0) + cost.eval_images / eval_rate
    return seconds, (own_train or not cost.train_images) and own_eval


# ---------------------------------------------------------------------- plan
@dataclass
class PartPlan:
    """One part of the grid in the plan: its runs, how many are done, and the cost of the rest."""

    runs: int = 0
    done: int = 0
    pending: int = 0
    train_images: int = 0  # of the pending runs
    eval_images: int = 0
    hours: float | None = None  # of the pending runs, at the measured rates
    hours_all: float | None = None  # of every run of the part


@dataclass
class Plan:
    """What a submission would do: the pending runs in chunks (one chunk a task), the submitit parameters, the cost."""

    executor: str
    profile: Profile  # what the tasks run (its device follows the GPUs asked for)
    store: ResultStore
    store_root: str | None
    cache: str
    parts: dict[str, PartPlan]
    runs: int  # unique runs of the grid (a run shared by two parts counts once)
    pending: list[RunSpec]  # unique runs to compute, in submission order
    chunks: list[list[RunSpec]]
    parameters: dict[str, Any]
    max_parallel: int | None
    chunk: int
    exact: bool  # pending decided by Session.stored (model loaded) rather than by the code fingerprint alone
    rates: Rates | None
    sizes_source: str
    unmeasured: list[str] = field(default_factory=list)  # methods whose rate is the slowest measured one's
    task_hours: float | None = None  # the longest chunk at the measured rates
    notes: list[str] = field(default_factory=list)
    session: Session | None = None  # the submitter's session of an exact plan (the serial executor runs on it)

    @property
    def logs(self) -> Path:
        """``<store>/logs``: submitit's pickles and every task's stdout and stderr."""
        return self.store.write_dir / "logs"


def default_gpus(profile: Profile, executor: str) -> int:
    """GPUs per task when not given: one for the paper profile on SLURM (the login node may have none), one for a
    local process when this machine runs the profile on CUDA, else none."""
    if executor == "slurm":
        return 1 if profile.name == "paper" else 0
    return 1 if executor == "local" and profile.device == "cuda" else 0


def _visible_gpus() -> int:
    """How many GPUs this machine shows."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def plan_grid(
    parts: Mapping[str, Sequence[RunSpec]], profile: Profile, store_root: str | os.PathLike | None = None,
    executor: str = "serial", options: ExecutorOptions | None = None, exact: bool = True,
    bench_dir: Path = BENCH_DIR,
) -> Plan:
    """Decide what a submission runs: every run of ``parts`` not stored with the current fingerprint (``exact``:
    ``Session.stored``, which loads the model; otherwise the code fingerprint alone, reading no data and no model),
    chunked for the executor, with the submitit parameters and an estimate of the hours at the measured rates."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    options = options or ExecutorOptions()
    root = None if store_root is None else str(store_root)
    session = open_store_session(profile, root) if exact else None
    store = session.store if session else ResultStore(profile.store_name, root=root)
    gpus = options.gpus_per_task if options.gpus_per_task is not None else default_gpus(profile, executor)
    worker = profile if executor == "serial" else replace(profile, device="cuda" if gpus else "cpu")

    states: dict[str, str] = {}
    unique: dict[str, RunSpec] = {}
    for specs in parts.values():
        for spec in specs:
            if spec.key not in unique:
                unique[spec.key] = spec
                states[spec.key] = run_state(store, spec, session)
    # ImageNet transfer first (the longest runs), then grouped by dataset (a task reads each dataset once)
    pending = sorted((s for k, s in unique.items() if states[k] != "done"),
                     key=lambda s: (s.kind != "imagenet_transfer", s.dataset))

    notes = []
    max_parallel = options.max_parallel
    if executor == "local" and max_parallel is None:
        max_parallel = max(1, _visible_gpus() // gpus) if gpus else max(1, (os.cpu_count() or 2) // 2)

    sizes, sizes_source = dataset_sizes(profile)
    rates = measured_rates(worker, bench_dir)
    costs = {key: run_cost(spec, sizes) for key, spec in unique.items()}
    unmeasured: set[str] = set()
    seconds: dict[str, float] = {}
    if rates is not None:
        for key, spec in unique.items():
            seconds[key], own = run_seconds(spec, costs[key], rates)
            if not own:
                unmeasured.add(spec.method)
    if executor == "serial":
        chunks = [pending] if pending else []
    elif executor == "local" and options.chunk is None:
        chunks = balanced_tasks(pending, max_parallel, seconds or None)
    else:
        chunk = options.chunk or max(DEFAULT_SLURM_CHUNK, math.ceil(len(pending) / MAX_ARRAY_TASKS))
        chunks = [pending[i:i + chunk] for i in range(0, len(pending), chunk)]
    chunk = max((len(c) for c in chunks), default=1)

    parameters: dict[str, Any] = {}
    if executor != "serial":
        parameters = {"name": f"perlkit-{store.name}", "timeout_min": options.time_min, "gpus_per_node": gpus}
    if executor == "slurm":
        cpus = options.cpus_per_task or profile.num_workers + 1  # the loader's workers and the main process
        worker = replace(worker, num_workers=min(worker.num_workers, cpus - 1))
        parameters.update(cpus_per_task=cpus, mem_gb=options.mem_gb, slurm_partition=options.partition,
                          slurm_array_parallelism=max_parallel)
        parameters = {k: v for k, v in parameters.items() if v is not None}
    elif executor == "local" and (options.partition or options.cpus_per_task or options.mem_gb):
        notes.append("--partition, --cpus-per-task and --mem apply to SLURM only; local tasks are plain processes")
    if executor == "slurm" and len(chunks) > MAX_ARRAY_TASKS:
        notes.append(f"{len(chunks)} tasks exceed SLURM's default MaxArraySize ({MAX_ARRAY_TASKS + 1}): raise --chunk")

    summary = {}
    for part, specs in parts.items():
        row = PartPlan()
        for spec in specs:
            row.runs += 1
            if states[spec.key] == "done":
                row.done += 1
                continue
            row.pending += 1
            row.train_images += costs[spec.key].train_images
            row.eval_images += costs[spec.key].eval_images
        if rates is not None:
            row.hours = sum(seconds[s.key] for s in specs if states[s.key] != "done") / 3600
            row.hours_all = sum(seconds[s.key] for s in specs) / 3600
        summary[part] = row
    task_hours = max((sum(seconds[s.key] for s in c) / 3600 for c in chunks), default=0.0) if rates else None
    return Plan(executor, worker, store, root, str(cache_root()), summary, len(unique), pending, chunks, parameters,
                max_parallel, chunk, exact, rates, sizes_source, sorted(unmeasured), task_hours, notes, session)


def balanced_tasks(pending: Sequence[RunSpec], tasks: int,
                   seconds: Mapping[str, float] | None = None) -> list[list[RunSpec]]:
    """Split runs among ``tasks`` local processes so that they finish together: longest run first, each to the task
    with the least estimated time (``seconds``, from the measured rates), or to the task with the fewest runs when
    there is no estimate. Cutting the submission order into consecutive blocks instead gave one process every
    long run of a sweep (ImageNet transfer and the multi-epoch recipes come in blocks) and left the other idle.
    Each task keeps the submission order: ImageNet transfer first, then by dataset."""
    order = {spec.key: i for i, spec in enumerate(pending)}
    bins: list[list[RunSpec]] = [[] for _ in range(max(1, min(tasks, len(pending))))]
    load = [0.0] * len(bins)
    for spec in sorted(pending, key=lambda s: -seconds[s.key]) if seconds else pending:
        i = min(range(len(bins)), key=lambda b: (load[b], len(bins[b])))
        bins[i].append(spec)
        load[i] += seconds[spec.key] if seconds else 1.0
    return [sorted(b, key=lambda s: order[s.key]) for b in bins if b]


def describe_plan(plan: Plan) -> list[str]:
    """The plan as ``perlkit results --dry-run`` prints it."""
    rates = plan.rates
    unit = "GPU-h" if rates and rates.gpu else "h"
    lines = [
        f"plan: {len(plan.pending):,} run(s) to compute on the {plan.executor} executor, profile {plan.profile.name} "
        f"({plan.profile.model}, tasks on {plan.profile.device})",
        f"store: {plan.store.write_dir} (task logs in {plan.logs}, failure records in "
        f"{plan.store.write_dir / 'failures'})",
        "stored results checked by Session.stored (code and weights)" if plan.exact else
        "stored results checked by their code fingerprint only (no model or data read; each task checks the weights "
        "before it skips a run)",
        "",
        f"{'part':<16}{'runs':>7}{'done':>7}{'to run':>8}{'train img':>14}{'test img':>14}"
        f"{f'{unit} to run':>13}{f'{unit} all':>11}",
    ]
    for part, row in plan.parts.items():
        hours = "" if row.hours is None else f"{row.hours:>13,.1f}{row.hours_all:>11,.1f}"
        lines.append(f"{part:<16}{row.runs:>7,}{row.done:>7,}{row.pending:>8,}{row.train_images:>14,}"
                     f"{row.eval_images:>14,}{hours}")
    if sum(p.runs for p in plan.parts.values()) != plan.runs:
        lines.append("(a run shared by two parts, as the ablations' default PERL, is counted in each; it runs once)")
    lines.append("")
    if plan.executor == "serial":
        lines.append(f"serial: {len(plan.pending):,} run(s) one after another in this process")
    else:
        parallel = plan.max_parallel if plan.max_parallel else "SLURM's default of 256"
        lines.append(f"job array: {len(plan.chunks):,} task(s) of up to {plan.chunk} run(s) (--chunk), "
                     f"at most {parallel} at once (--max-parallel)")
        lines.append("submitit parameters: " + ", ".join(f"{k}={v!r}" for k, v in plan.parameters.items()))
    if rates is None:
        lines.append(f"no measured rates for {plan.profile.name} on {plan.profile.model} in {BENCH_DIR}: no estimate "
                     "(perlkit bench or perlkit smoke --ship records them)")
    else:
        lines.append(f"rates: {', '.join(rates.sources)}: measured on {rates.device_name} ({rates.device})")
        if not rates.gpu and plan.profile.device == "cuda":
            lines.append(f"no GPU measurement exists yet (no data/bench/{plan.profile.name}-cuda*.json), so the "
                         f"hours are hours on that CPU, not GPU-hours; a GPU run is far faster")
        if plan.unmeasured:
            lines.append(f"not measured, given the slowest measured method's rate: {', '.join(plan.unmeasured)}")
        if plan.task_hours is not None and plan.executor != "serial":
            lines.append(f"longest task: {plan.task_hours:,.1f} {unit} at these rates (task limit --time "
                         f"{plan.parameters.get('timeout_min')} min)")
    lines.append(f"image counts: {plan.sizes_source}; train = 16 shots x base classes (ImageNet: all classes) x "
                 "the epochs of each run's recipe, test = every test image the run evaluates")
    lines += plan.notes
    return lines


# ---------------------------------------------------------------------- one task
def _task_log() -> str | None:
    """This task's stderr log under ``<store>/logs`` when it runs under submitit, else None."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    import submitit

    return str(submitit.JobEnvironment().paths.stderr)


def _attempt(session: Session, spec: RunSpec, wait: bool, log: str | None) -> str:
    """Run one spec: 'done', 'busy' (another process holds it) or 'failed' (its exception is in the log and in a
    failure record)."""
    start = time.perf_counter()
    try:
        result = session.run(spec, wait=wait)
    except Exception as err:  # noqa: BLE001 - any failure of one run is recorded; the task goes on with the next
        traceback.print_exc()
        record_failure(session.store, spec, err, log)
        print(f"FAILED {spec.filename}: {type(err).__name__}: {err}", flush=True)
        return "failed"
    if result is None:
        return "busy"
    clear_failure(session.store, spec)
    print(f"done   {spec.filename} ({time.perf_counter() - start:.1f} s)", flush=True)
    return "done"


def run_chunk(profile: Profile, store_root: str | None, cache: str, specs: Sequence[RunSpec]) -> list[str]:
    """One task of the array: load the model once, run each spec through ``Session.run`` into the shared store (runs
    held by another process are waited for last), record failures; raises at the end if any run failed, so the
    scheduler marks the task failed. Returns the file names of the runs done."""
    os.environ["PERLKIT_CACHE"] = cache  # the submitter's cache (and mini world), whatever this node's environment
    start = time.perf_counter()
    session = open_store_session(profile, store_root)
    session.progress = False
    print(f"{profile.model} on {profile.device} loaded in {time.perf_counter() - start:.1f} s; {len(specs)} run(s) "
          f"into {session.store.write_dir}", flush=True)
    log = _task_log()
    outcome = {spec.key: _attempt(session, spec, False, log) for spec in specs}
    for spec in specs:
        if outcome[spec.key] == "busy":
            outcome[spec.key] = _attempt(session, spec, True, log)
    failed = [spec for spec in specs if outcome[spec.key] == "failed"]
    if failed:
        where = failure_path(session.store, failed[0]).parent
        raise RuntimeError(f"{len(failed)} of {len(specs)} run(s) failed ({', '.join(s.filename for s in failed)}); "
                           f"tracebacks above, records in {where}")
    return [spec.filename for spec in specs]


# ---------------------------------------------------------------------- submit and wait
@dataclass
class Submission:
    """A started array: its submitit jobs, and (local) the chunks still waiting for a free process."""

    plan: Plan
    jobs: list[Any] = field(default_factory=list)
    queued: list[list[RunSpec]] = field(default_factory=list)
    executor: Any = None
    slots: dict[int, Any] = field(default_factory=dict)  # local: slot -> running job (a slot owns its GPUs)


def _start_local(submission: Submission) -> None:
    """Start queued chunks as local processes while fewer than ``max_parallel`` run, each slot on its own GPUs."""
    plan = submission.plan
    gpus = plan.parameters.get("gpus_per_node", 0)
    visible = _visible_gpus() if gpus else 0
    for slot in range(plan.max_parallel or 1):
        job = submission.slots.get(slot)
        if not submission.queued or (job is not None and not job.done()):
            continue
        if visible:
            submission.executor.update_parameters(
                gpus_per_node=gpus, visible_gpus=[(slot * gpus + i) % visible for i in range(gpus)])
        chunk = submission.queued.pop(0)
        job = submission.executor.submit(run_chunk, plan.profile, plan.store_root, plan.cache, chunk)
        submission.slots[slot] = job
        submission.jobs.append(job)


def submit_grid(plan: Plan) -> Submission:
    """Start the plan: serial runs it here and now; local starts its first processes; slurm submits one array."""
    submission = Submission(plan)
    if not plan.pending:
        return submission
    if plan.executor == "serial":
        sweep_serially(plan.session or open_store_session(plan.profile, plan.store_root), plan.pending,
                       desc=f"grid ({plan.profile.name})")
        return submission
    import submitit

    plan.store.ensure_writable()
    if plan.session is not None:
        _ = plan.session.data_root  # fails here, not in every task, when the data is absent (mini: built once here)
    plan.logs.mkdir(parents=True, exist_ok=True)
    try:  # LocalExecutor itself: only it takes visible_gpus, which gives each local process its own GPUs
        submission.executor = (submitit.LocalExecutor(folder=plan.logs) if plan.executor == "local" else
                               submitit.AutoExecutor(folder=plan.logs, cluster=plan.executor))
    except RuntimeError as err:
        raise ValueError(f"cannot submit to {plan.executor} from this machine ({err}); --dry-run shows the plan "
                         "anywhere, --executor local runs it as processes here") from err
    submission.executor.update_parameters(**plan.parameters)
    if plan.executor == "slurm":
        n = len(plan.chunks)
        submission.jobs = submission.executor.map_array(
            run_chunk, [plan.profile] * n, [plan.store_root] * n, [plan.cache] * n, plan.chunks)
    else:
        submission.queued = list(plan.chunks)
        _start_local(submission)
    return submission


@dataclass
class GridRun:
    """The outcome of ``run_grid``: the plan, the tasks started and, once waited for, the state of every run."""

    plan: Plan
    submitted: int = 0  # runs submitted (0 for a dry run, or when every run was already stored)
    job_ids: list[str] = field(default_factory=list)
    task_errors: list[str] = field(default_factory=list)  # one line per failed task, with its log
    states: dict[str, int] | None = None  # RUN_STATES counts of the submitted runs, after waiting


def _last_error(err: BaseException) -> str:
    """The exception line of a failed task: the last line of the traceback submitit quotes between dashes."""
    blocks = str(err).split("----------------------")
    lines = [line for line in (blocks[1] if len(blocks) > 2 else str(err)).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(err).__name__


@contextlib.contextmanager
def _cancel_local_on_interrupt(submission: Submission) -> Iterator[None]:
    """Ctrl-C or a kill (SIGTERM) of the waiting process stops its local worker processes too: they would otherwise
    run on, orphaned, and keep writing results (each one's finished runs stay stored; a new call resumes)."""
    local = submission.plan.executor == "local"
    previous = None
    if local and threading.current_thread() is threading.main_thread():
        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")
        previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    except BaseException:
        if local:
            submission.queued.clear()
            for job in submission.jobs:
                with contextlib.suppress(Exception):
                    job.cancel(check=False)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def wait_grid(submission: Submission, poll_s: float = 0.5) -> GridRun:
    """Wait for every task (local: starting queued chunks as processes free up), then read each submitted run's
    state back from the store: what counts is what the store holds, not what a task said."""
    plan = submission.plan
    errors = []
    with _cancel_local_on_interrupt(submission):
        while submission.queued:
            time.sleep(poll_s)
            _start_local(submission)
        for job in submission.jobs:
            try:
                job.result()
            except Exception as err:  # noqa: BLE001 - a failed task is reported with its log, the others collected
                errors.append(f"task {job.job_id}: {_last_error(err)} (log {job.paths.stderr})")
    states = Counter(run_state(plan.store, spec, plan.session) for spec in plan.pending)
    return GridRun(plan, len(plan.pending), [str(job.job_id) for job in submission.jobs], errors, dict(states))


def run_grid(
    parts: Mapping[str, Sequence[RunSpec]], profile: Profile, store_root: str | os.PathLike | None = None,
    executor: str = "serial", options: ExecutorOptions | None = None, dry_run: bool = False,
    wait: bool | None = None,
) -> GridRun:
    """Plan, submit and (serial, local; slurm with ``wait``) wait for the pending runs of a grid; ``dry_run`` plans
    only, from the code fingerprint without loading the model. What ``perlkit results --executor`` runs."""
    plan = plan_grid(parts, profile, store_root, executor, options, exact=not dry_run)
    if dry_run or not plan.pending:
        return GridRun(plan)
    submission = submit_grid(plan)
    if wait is False or (wait is None and executor == "slurm"):
        return GridRun(plan, len(plan.pending), [str(job.job_id) for job in submission.jobs])
    return wait_grid(submission)
