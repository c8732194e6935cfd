"""perlkit bench: method resolution, measured block counts against the cost model, the JSON record and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from perlkit import bench
from perlkit.backbone import FrozenCLIP
from perlkit.bench import BenchSettings, MethodSpec, count_block_evaluations, resolve_methods, run_bench
from perlkit.bench import run as bench_run
from perlkit.cli import main
from perlkit.methods import build_method

TINY = BenchSettings(
    train_batches=(2,), train_classes=3, train_repeats=1, eval_batch=2, eval_rounds=2, memory_classes=6,
    memory_chunk=4,
)  # fmt: skip


def test_resolve_methods_expands_perl_and_rejects_unknown() -> None:
    labels = [s.label for s in resolve_methods(["zeroshot", "perl"])]
    assert labels == ["zeroshot", "perl-k1", "perl-k2", "perl-k3", "perl", "perl-k5"]
    assert resolve_methods(["perl-k4"]) == [MethodSpec("perl", "perl", {"steps": 4})]
    assert {"zeroshot", "perl", "mmrl"} <= {s.label for s in resolve_methods(None)}
    with pytest.raises(ValueError, match=r"unknown method 'perll'.*available: .*zeroshot"):
        resolve_methods(["perll"])


def test_resolve_methods_reads_option_variants() -> None:
    """'rmma:mar=false' times R-MMA without its routing beside R-MMA itself; a bad variant names what is wrong."""
    specs = resolve_methods(["rmma", "rmma:mar=false", "rmma:attention=false,sep_weight=0"])
    assert [s.label for s in specs] == ["rmma", "rmma:attention=false,sep_weight=0", "rmma:mar=false"]
    assert specs[2] == MethodSpec("rmma:mar=false", "rmma", {"mar": False})
    assert specs[1].options == {"attention": False, "sep_weight": 0}
    with pytest.raises(ValueError, match=r"unknown method 'rmmb' in 'rmmb:mar=false'"):
        resolve_methods(["rmmb:mar=false"])
    with pytest.raises(ValueError, match=r"bad method options in 'rmma:mar'"):
        resolve_methods(["rmma:mar"])
    with pytest.raises(ValueError, match=r"no options after ':' in 'rmma:'"):
        resolve_methods(["rmma:"])


def test_zeroshot_runs_every_block_once(tiny_backbone: FrozenCLIP) -> None:
    counts = count_block_evaluations(build_method("zeroshot", tiny_backbone), tiny_backbone.image_size)
    assert counts["eval_vision_per_image"] == 12
    assert counts["eval_vision_per_block"] == [1] * 12
    assert counts["classifier_text_per_class"] == 12
    assert counts["eval_text_per_image"] == 0 and counts["classifier_vision"] == 0


@pytest.mark.parametrize(("split", "steps"), [(7, 4), (7, 1), (3, 2), (0, 3), (11, 5)])
def test_perl_block_count_is_the_cost_model(tiny_backbone: FrozenCLIP, split: int, steps: int) -> None:
    torch.manual_seed(0)
    perl = build_method("perl", tiny_backbone, split=split, steps=steps)
    counts = count_block_evaluations(perl, tiny_backbone.image_size)
    model = split + (steps + 1) * (12 - split)
    assert counts["eval_vision_per_image"] == model
    assert counts["classifier_text_per_class"] == model
    assert counts["eval_vision_per_block"] == [1] * split + [steps + 1] * (12 - split)
    assert counts["eval_text_per_image"] == 0  # the classifier is computed once; logits never touch the text tower
    # training: image base and zero-shot pass once per step (no graph), the text side's are cached in the class set
    assert counts["train_vision_per_image"] == model
    assert counts["train_text_per_class"] == steps * (12 - split)
    spec = MethodSpec("perl", "perl", {"steps": steps, "split": split})
    assert bench.cost_model_blocks(spec, 12, 7) == model


def test_run_bench_record_has_the_documented_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = bench_run.build_method

    def build(name: str, backbone: FrozenCLIP, **options: object):
        if name == "mma":
            raise RuntimeError("broken on purpose")
        return real_build(name, backbone, **options)

    monkeypatch.setattr(bench_run, "build_method", build)
    result = run_bench("mini", ["zeroshot", "perl-k4", "perl-k1", "mma"], model="tiny-clip", settings=TINY,
                       progress=False)
    for key in ("schema", "created", "git_commit", "torch_version", "device", "device_name", "profile", "model",
                "quick", "methods", "train_ms_per_image", "eval_images_per_s", "perl_eval_over_zeroshot",
                "block_evaluations", "cost_model", "memory_1000_classes", "settings"):
        assert key in result, key
    assert result["device"] == "cpu" and result["model"] == "tiny-clip" and result["profile"] == "mini"
    assert set(result["methods"]) == {"zeroshot", "perl", "perl-k1", "mma"}
    perl = result["methods"]["perl"]
    for key in ("trainable_params", "train_ms_per_image", "eval_images_per_s", "peak_rss_mb", "cuda_max_allocated_mb",
                "block_evaluations", "cost_model_blocks", "error"):
        assert key in perl, key
    assert perl["trainable_params"] == 2 * (5 * 32 + 1) and perl["error"] is None
    assert perl["train_ms_per_image"]["2"] > 0 and perl["eval_images_per_s"] > 0
    assert perl["peak_rss_mb"]["train"]["2"] > 0 and perl["peak_rss_mb"]["eval"] > 0
    assert result["train_ms_per_image"]["perl"] == perl["train_ms_per_image"]["2"]
    assert result["train_ms_per_image"]["zeroshot"] is None  # nothing to train
    assert result["block_evaluations"] == {"zeroshot": 12, "perl": 32, "perl-k1": 17, "mma": None}
    assert result["cost_model"] == {"zeroshot": 12, "perl": 32, "ratio": 2.667}
    assert result["perl_eval_over_zeroshot"] > 0 and len(result["perl_eval_over_zeroshot_rounds"]) == 2
    assert "broken on purpose" in result["methods"]["mma"]["error"]
    runs = result["memory_1000_classes"]["runs"]
    assert set(runs) == {"unchunked", "chunk4"}
    assert all(r["error"] is None and r["peak_rss_mb"] > 0 for r in runs.values())
    json.dumps(result)  # plain data throughout
    assert bench.BenchRecord.from_json(result).to_json() == result  # the typed record holds exactly what is written
    shipped = json.loads((bench.BENCH_DIR / "mini-cpu.json").read_text())  # written before the typed record
    assert set(result) == set(shipped) | {"host_cpus"}  # the same keys, plus files.provenance's CPU count
    assert set(result["settings"]) == set(shipped["settings"])
    assert set(result["methods"]["perl"]) == set(shipped["methods"]["perl"])
    assert set(result["methods"]["perl"]["block_evaluations"]) == set(shipped["methods"]["perl"]["block_evaluations"])
    assert set(result["memory_1000_classes"]) == set(shipped["memory_1000_classes"])
    assert set(runs["chunk4"]) == set(shipped["memory_1000_classes"]["runs"]["chunk100"])


def test_cli_quick_json_on_the_tiny_model(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    argv = ["bench", "--model", "tiny-clip", "--quick", "--json", "--no-progress", "--threads", "0",
            "--methods", "zeroshot", "perl-k4", "--train-batches", "2", "--train-classes", "3", "--train-repeats", "1",
            "--eval-batch", "2", "--eval-rounds", "1", "--memory-classes", "0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)  # stdout holds the JSON and nothing else
    assert printed == json.loads(out.read_text())
    assert printed["quick"] is True and set(printed["train_ms_per_image"]) == {"zeroshot", "perl"}
    assert printed["memory_1000_classes"]["skipped"]


def test_cli_unknown_method_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--model", "tiny-clip", "--methods", "nope", "--no-save"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "perl-k1" in err
