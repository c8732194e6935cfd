"""Executors: a grid gives the same numbers run serially in this process or as a local submitit job array (two
processes, another order); a second submission submits nothing; a failing run leaves a record naming its task's log;
``--status`` counts every part; the paper plan for SLURM needs no SLURM, no data and no ViT-B/16."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_data_world import make_world

from perlkit.cli import main
from perlkit.experiments import RunSpec, b2n_specs
from perlkit.experiments.executors import (
    ExecutorOptions,
    Rates,
    balanced_tasks,
    describe_plan,
    measured_rates,
    plan_grid,
    run_chunk,
    run_cost,
    run_grid,
    run_seconds,
)
from perlkit.experiments.store import ResultStore
from perlkit.experiments.sweeps import SWEEP_PARTS, full_sweep_specs, read_failure, record_failure
from perlkit.files import REPO_DATA
from perlkit.profiles import Profile, get_profile

GRID = b2n_specs(["perl", "mma"], ["dtd", "eurosat"], options={"perl": {"steps": 1}})
BROKEN = RunSpec("b2n", "perl", "dtd", options={"steps": -1})  # refused when its method is built


def tiny_profile(data_root: Path) -> Profile:
    """The paper profile's code path on a tiny random CLIP, one thread, and a fabricated CoOp root."""
    return Profile("mini", "tiny-clip", None, None, str(data_root), "cpu", 64, 0, "test profile", 1)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("executors") / "data"
    make_world(root, ["dtd", "eurosat"])
    return root


def stored_metrics(store: ResultStore, specs: list[RunSpec]) -> dict[str, dict[str, float]]:
    return {spec.filename: json.loads(store.path_for(spec).read_text())["metrics"] for spec in specs}


def test_local_array_gives_the_serial_numbers_and_resubmits_nothing(data_root: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path / "cache"))
    profile = tiny_profile(data_root)
    serial = run_grid({"b2n": GRID[::-1]}, profile, tmp_path / "serial")  # the other order
    assert (serial.submitted, serial.states) == (4, {"done": 4})

    options = ExecutorOptions(max_parallel=2)
    local = run_grid({"b2n": GRID, "broken": [BROKEN]}, profile, tmp_path / "local", "local", options)
    assert local.submitted == 5 and len(local.job_ids) == 2  # chunks of 3 and 2 runs, two processes
    assert local.states == {"done": 4, "failed": 1}
    assert len(local.task_errors) == 1 and "1 of 3 run(s) failed" in local.task_errors[0]
    assert stored_metrics(local.plan.store, GRID) == stored_metrics(serial.plan.store, GRID)

    record = read_failure(local.plan.store, BROKEN)
    log = Path(record["log"])
    assert log.parent == local.plan.store.write_dir / "logs" and "steps must be >= 0" in log.read_text()
    assert "steps must be >= 0" in record["error"]

    again = run_grid({"b2n": GRID}, profile, tmp_path / "local", "local", options)
    assert (again.submitted, again.job_ids, again.plan.pending) == (0, [], [])
    cheap = plan_grid({"b2n": GRID, "broken": [BROKEN]}, profile, tmp_path / "local", "local", exact=False)
    assert cheap.pending == [BROKEN] and cheap.parts["b2n"].done == 4  # the dry run's check agrees, reading no model


def test_a_run_that_succeeds_clears_its_failure_record(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path / "cache"))
    profile = tiny_profile(data_root)
    spec = RunSpec("b2n", "zeroshot", "dtd")
    store = ResultStore(profile.store_name, root=tmp_path / "store")
    record_failure(store, spec, RuntimeError("preempted"), log=None)
    assert read_failure(store, spec)["error"] == "RuntimeError: preempted"
    assert run_chunk(profile, str(tmp_path / "store"), str(tmp_path / "cache"), [spec]) == [spec.filename]
    assert read_failure(store, spec) is None and store.path_for(spec).is_file()


def test_status_counts_every_part_and_names_the_failures_log(tmp_path: Path, monkeypatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path))
    # a run the repository does not ship (seed 9): a failure record counts only for a run not done
    spec = next(s for s in full_sweep_specs("mini", (9,), ["rivals_default"]) if s.kind == "imagenet_transfer")
    record_failure(ResultStore("mini"), spec, MemoryError("out of memory"), log="/logs/7_0_log.err")
    assert main(["results", "--profile", "mini", "--status", "--seeds", "9"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["part", "done", "stale", "missing", "failed"]
    part_lines = lines[1:1 + len(SWEEP_PARTS)]
    rows = {line.split()[0]: [int(n.replace(",", "")) for n in line.split()[1:]] for line in part_lines}
    assert list(rows) == list(SWEEP_PARTS)
    for part, counts in rows.items():
        assert sum(counts) == len(full_sweep_specs("mini", (9,), [part])), part
    assert rows["rivals_default"][3] == 1
    assert any(line.startswith("failed: imagenet_transfer") and "/logs/7_0_log.err" in line for line in lines)


def test_paper_dry_run_for_slurm_needs_no_slurm_data_or_model(tmp_path: Path, monkeypatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path))
    monkeypatch.delenv("PERLKIT_DATA", raising=False)
    monkeypatch.setattr(Profile, "backbone", lambda self: pytest.fail("loaded the model"))
    monkeypatch.setattr("perlkit.experiments.protocols.load_dataset", lambda *a: pytest.fail("read the data"))
    args = ["results", "--profile", "paper", "--executor", "slurm", "--dry-run", "--seeds", "1", "2", "3",
            "--max-parallel", "16", "--partition", "gpu", "--mem", "32"]
    assert main(args) == 0
    out = capsys.readouterr().out
    runs = len({s.key for s in full_sweep_specs("paper", (1, 2, 3))})
    assert f"plan: {runs:,} run(s) to compute on the slurm executor" in out
    assert f"job array: {math.ceil(runs / 4)} task(s) of up to 4 run(s)" in out
    for parameter in ("gpus_per_node=1", "timeout_min=720", "slurm_partition='gpu'", "slurm_array_parallelism=16",
                      "mem_gb=32.0"):
        assert parameter in out
    rows = {words[0]: words for words in map(str.split, out.splitlines()) if words and words[0] in SWEEP_PARTS}
    assert list(rows) == list(SWEEP_PARTS)
    for row in rows.values():  # part, runs, done, to run, train img, test img, hours to run, hours all
        assert len(row) == 8 and float(row[6].replace(",", "")) > 0
    gpu_records = sorted((REPO_DATA / "bench").glob("paper-cuda*.json"))
    if gpu_records:  # the estimate says which GPU measured its rates
        assert json.loads(gpu_records[0].read_text())["device_name"] in out
    else:
        cpu = json.loads((REPO_DATA / "bench" / "paper-cpu-1000-classes.json").read_text())
        assert f"measured on {cpu['device_name']} (cpu)" in out and "no GPU measurement exists yet" in out
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


def test_estimate_of_one_run_from_published_counts_and_the_cpu_bench(tmp_path: Path) -> None:
    """DTD: 47 classes, 1,692 test images; 16 shots x 24 base classes; PERL 1 epoch, MMA's own recipe 5 epochs."""
    from perlkit.data import PUBLISHED_COUNTS

    perl = RunSpec("b2n", "perl", "dtd", profile="paper")
    assert run_cost(perl, PUBLISHED_COUNTS).train_images == 384 and run_cost(perl, PUBLISHED_COUNTS).eval_images == 1692
    mma = RunSpec("b2n", "mma", "dtd", protocol="default", profile="paper")
    assert run_cost(mma, PUBLISHED_COUNTS).train_images == 384 * 5
    transfer = RunSpec("imagenet_transfer", "zeroshot", "imagenet", profile="paper")
    assert run_cost(transfer, PUBLISHED_COUNTS).train_images == 0
    # ImageNet, the 10 cross-dataset targets, the 4 domain-generalisation variants
    assert run_cost(transfer, PUBLISHED_COUNTS).eval_images == 50_000 + 83_696 + 98_389
    cpu_only = tmp_path / "bench"  # the CPU record alone (a GPU record, when shipped, is preferred: tested below)
    cpu_only.mkdir()
    (cpu_only / "paper-cpu-1000-classes.json").write_bytes((REPO_DATA / "bench" / "paper-cpu-1000-classes.json")
                                                          .read_bytes())
    rates = measured_rates(get_profile("paper", device="cpu"), cpu_only)
    assert rates is not None and not rates.gpu and rates.sources == ("paper-cpu-1000-classes.json",)
    seconds, own = run_seconds(perl, run_cost(perl, PUBLISHED_COUNTS), rates)
    assert own and seconds == pytest.approx(384 * 2.436348 + 1692 * 1.2047581)


def test_gpu_records_are_preferred_and_the_plan_says_gpu_hours(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path / "cache"))
    bench = tmp_path / "bench"
    bench.mkdir()
    for device, ms in (("cpu", 2000.0), ("cuda", 10.0)):
        record = {"schema": "perlkit-bench-v1", "model": "ViT-B-16", "device": device, "device_name": f"a {device}",
                  "methods": {"perl": {"train_ms_per_image": {"4": ms}, "eval_ms_per_image": ms / 2}}}
        (bench / f"paper-{device}.json").write_text(json.dumps(record))
    smoke = {"schema": "perlkit-smoke-v1", "model": "ViT-B-16", "device": "cuda", "device_name": "a cuda",
             "runs": {"mma": {"dtd": {"ok": True, "train_images": 400, "train_seconds": 2.0, "eval_images": 900,
                                      "eval_seconds": 1.0}}}}
    (bench / "paper-cuda-smoke.json").write_text(json.dumps(smoke))
    rates = measured_rates(get_profile("paper"), bench)
    assert isinstance(rates, Rates) and rates.gpu and rates.sources == ("paper-cuda.json", "paper-cuda-smoke.json")
    assert rates.train == {"perl": {4: 100.0}, "mma": {0: 200.0}} and rates.eval == {"perl": 200.0, "mma": 900.0}
    parts = {"b2n": b2n_specs(["perl", "mma", "mmrl"], ["dtd"], profile="paper")}
    plan = plan_grid(parts, get_profile("paper"), executor="slurm", exact=False, bench_dir=bench)
    assert plan.unmeasured == ["mmrl"]
    perl = 384 / 100 + 1692 / 200
    mma = 384 / 200 + 1692 / 900  # the smoke record's end-to-end rates, at whatever batch
    mmrl = 384 / 100 + 1692 / 200  # not measured: the slowest measured rates
    assert plan.parts["b2n"].hours == pytest.approx((perl + mma + mmrl) / 3600)
    assert "GPU-h to run" in "\n".join(describe_plan(plan))


def test_local_processes_get_their_own_gpus(monkeypatch) -> None:
    """Each local slot sees its own GPUs (CUDA_VISIBLE_DEVICES through LocalExecutor's visible_gpus); a slot whose
    process still runs takes no new chunk."""
    from types import SimpleNamespace

    import perlkit.experiments.executors as executors

    monkeypatch.setattr(executors, "_visible_gpus", lambda: 4)
    calls = []

    class Executor:
        def update_parameters(self, **parameters) -> None:
            calls.append(parameters)

        def submit(self, fn, *args) -> SimpleNamespace:  # noqa: ANN001
            return SimpleNamespace(done=lambda: False)

    plan = SimpleNamespace(parameters={"gpus_per_node": 2}, max_parallel=2, profile=None, store_root=None, cache="")
    submission = executors.Submission(plan, queued=[[GRID[0]], [GRID[1]], [GRID[2]]], executor=Executor())
    executors._start_local(submission)
    executors._start_local(submission)
    assert calls == [{"gpus_per_node": 2, "visible_gpus": [0, 1]}, {"gpus_per_node": 2, "visible_gpus": [2, 3]}]
    assert len(submission.jobs) == 2 and submission.queued == [[GRID[2]]]


def test_interrupting_a_local_wait_cancels_its_worker_processes() -> None:
    """Ctrl-C (or SIGTERM) of `perlkit results --executor local` must not leave orphaned workers writing results."""
    import os
    import signal
    import types

    from perlkit.experiments import executors as ex

    class FakeJob:
        cancelled = False

        def cancel(self, check: bool = True) -> None:
            self.cancelled = True

    jobs = [FakeJob(), FakeJob()]
    submission = ex.Submission(plan=types.SimpleNamespace(executor="local"), jobs=jobs, queued=[["chunk"]])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), ex._cancel_local_on_interrupt(submission):
        os.kill(os.getpid(), signal.SIGTERM)  # what `kill <pid>` of the waiting process does
    assert all(job.cancelled for job in jobs) and submission.queued == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is restored
    slurm = ex.Submission(plan=types.SimpleNamespace(executor="slurm"), jobs=[FakeJob()])
    with pytest.raises(KeyboardInterrupt), ex._cancel_local_on_interrupt(slurm):
        raise KeyboardInterrupt
    assert not slurm.jobs[0].cancelled  # cluster jobs outlive the submitting shell, as SLURM users expect


def test_local_tasks_share_the_estimated_time_not_the_run_count() -> None:
    """Two processes on a sweep whose long runs come in one block: each gets half the estimated time, in the
    submission order; without estimates, half the runs each."""
    specs = [RunSpec("b2n", "perl", "dtd", seed=seed) for seed in range(1, 9)]
    seconds = {spec.key: (100.0 if i < 2 else 10.0) for i, spec in enumerate(specs)}
    tasks = balanced_tasks(specs, 2, seconds)
    assert [sum(seconds[s.key] for s in t) for t in tasks] == [130.0, 130.0]
    assert all([s.seed for s in t] == sorted(s.seed for s in t) for t in tasks)
    assert sorted(s.key for t in tasks for s in t) == sorted(s.key for s in specs)
    assert [len(t) for t in balanced_tasks(specs, 3)] == [3, 3, 2] and balanced_tasks(specs[:1], 4) == [specs[:1]]
    assert balanced_tasks([], 2) == []
