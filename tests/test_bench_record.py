"""The bench's typed record: every committed bench file reads back through it unchanged, and a file with a missing
or unknown key is refused by name."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from perlkit import bench
from perlkit.bench.record import provenance_fields
from perlkit.files import provenance

COMMITTED = sorted(p for p in bench.BENCH_DIR.glob("*.json") if "-smoke" not in p.stem)  # smoke: another schema


def test_the_repository_ships_bench_files() -> None:
    assert {p.name for p in COMMITTED} >= {"mini-cpu.json", "paper-cuda-nvidia-h100-80gb-hbm3.json"}


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_committed_file_round_trips_through_the_record(path: Path) -> None:
    data = json.loads(path.read_text())
    record = bench.read_record(path)
    assert isinstance(record.settings, bench.BenchSettings) and isinstance(record.cost_model, bench.CostModel)
    assert all(isinstance(m, bench.MethodRecord) for m in record.methods.values())
    assert all(isinstance(r, bench.MemoryRun) for r in record.memory_1000_classes.runs.values())
    assert record.to_json() == data  # the same keys, nesting and values


def test_committed_files_load_by_name() -> None:
    records = bench.load_records(bench.BENCH_DIR)
    assert list(records) == [p.name for p in COMMITTED]
    cuda = records["paper-cuda-nvidia-h100-80gb-hbm3.json"]
    assert cuda.device == "cuda" and cuda.timer == "wall"
    assert cuda.memory_1000_classes.runs["unchunked"].fits_16gb is True  # a CUDA-only key, kept
    assert cuda.methods["perl"].cuda_max_allocated_mb.train["4"] > 0
    assert records["mini-cpu.json"].memory_1000_classes.runs["chunk100"].fits_16gb is None  # absent on CPU
    assert bench.load_records(Path("/nonexistent")) == {}


def test_smoke_records_beside_bench_records_are_left_out_and_strays_refused(tmp_path: Path) -> None:
    """``perlkit smoke --ship`` writes into data/bench/ too: the bench's readers skip its records by name only."""
    assert (bench.BENCH_DIR / "paper-cuda-smoke.json").is_file()  # a shipped one (the H200 run) sits there now
    data = json.loads((bench.BENCH_DIR / "mini-cpu.json").read_text())
    (tmp_path / "mini-cpu.json").write_text(json.dumps(data))
    (tmp_path / "paper-cuda-smoke.json").write_text(json.dumps({"schema": "perlkit-smoke-v1"}))
    (tmp_path / "paper-cpu-smoke-quick.json").write_text(json.dumps({"schema": "perlkit-smoke-v1"}))
    assert list(bench.load_records(tmp_path)) == ["mini-cpu.json"]
    (tmp_path / "notes.json").write_text(json.dumps({"schema": "perlkit-smoke-v1"}))
    with pytest.raises(bench.RecordError, match="notes.json: not a perlkit-bench-v1 record"):
        bench.load_records(tmp_path)


def test_a_missing_or_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    data = json.loads((bench.BENCH_DIR / "mini-cpu.json").read_text())
    broken = copy.deepcopy(data)
    del broken["timer"]
    with pytest.raises(bench.RecordError, match=r"missing key\(s\) \['timer'\]"):
        bench.BenchRecord.from_json(broken)
    broken = copy.deepcopy(data)
    broken["methods"]["perl"]["train_seconds"] = 1.0
    with pytest.raises(bench.RecordError, match=r"MethodRecord: unknown key\(s\) \['train_seconds'\]"):
        bench.BenchRecord.from_json(broken)
    path = tmp_path / "other.json"
    path.write_text(json.dumps({**data, "schema": "perlkit-smoke-v1"}))
    with pytest.raises(bench.RecordError, match="not a perlkit-bench-v1 record"):
        bench.read_record(path)


def test_provenance_is_the_files_record_under_the_bench_keys() -> None:
    fields = provenance_fields(torch.device("cpu"))
    common = provenance("cpu")
    assert fields["torch_version"] == common["torch"] and fields["open_clip_version"] == common["open_clip"]
    assert fields["device"] == "cpu" and fields["device_name"] == common["device"]
    assert fields["host_cpus"] == common["host_cpus"] and fields["num_threads"] == torch.get_num_threads()


def test_format_table_lists_methods_in_bench_order() -> None:
    text = bench.format_table(bench.read_record(bench.BENCH_DIR / "mini-cpu.json"))
    rows = [line.split()[0] for line in text.splitlines()[2:12]]
    assert rows == ["zeroshot", "perl-k1", "perl-k2", "perl-k3", "perl", "perl-k5", "mma", "mmrl", "mmrlpp", "rmma"]
    assert "PERL (K=4) eval time / zero-shot: 2.71 (cost model 32/12 = 2.667)" in text


def test_a_record_without_memory_step_says_why_from_its_settings() -> None:
    # the H200 parts record set memory_classes to 0 on CUDA; its stored reason named only the CPU --quick default
    record = bench.read_record(bench.BENCH_DIR / "paper-cuda-nvidia-h200-rmma-parts.json")
    assert record.settings.memory_classes == 0
    assert "CPU with --quick" in record.memory_1000_classes.skipped
    assert record.memory_1000_classes.skip_reason == bench.record.NO_MEMORY_CLASSES
    assert "0-class step: not measured: this record's settings set memory_classes to 0" in bench.format_table(record)
