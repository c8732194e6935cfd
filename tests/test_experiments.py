"""Protocols end to end on fabricated CoOp trees with a tiny random CLIP: caching, resume, tables, dynamics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data_world import make_world

from perlkit.data import DATASET_NAMES
from perlkit.experiments import (
    ResultStore,
    RunSpec,
    Session,
    b2n_specs,
    b2n_summary,
    b2n_table,
    harmonic_mean,
    reasoning_dynamics,
    run_ablation,
    transfer_specs,
    transfer_table,
)
from perlkit.profiles import Profile, get_profile


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("exp")
    make_world(root / "data", DATASET_NAMES)
    profile = Profile("mini", "tiny-clip", None, None, str(root / "data"), "cpu", 64, 0, "test profile")
    return Session(profile, progress=False, store=ResultStore("mini", root / "results"))


def test_b2n_runs_cache_and_summarise(session: Session) -> None:
    specs = b2n_specs(["zeroshot", "perl"], ["oxford_pets", "eurosat"])
    results = session.sweep(specs)
    for spec, result in zip(specs, results, strict=True):
        path = session.store.path_for(spec)
        assert path.is_file() and json.loads(path.read_text())["spec"] == spec.to_dict()
        m = result["metrics"]
        assert m["hm"] == pytest.approx(harmonic_mean(m["base"], m["novel"]))
        assert result["provenance"]["git_commit"] and result["provenance"]["device"]
    # cached: a second sweep reads the same files and returns the same numbers
    again = session.sweep(specs)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in results]
    summary = b2n_summary(b2n_table(results))
    avg = summary[(summary.method == "perl") & (summary.dataset == "average")].iloc[0]
    per = summary[(summary.method == "perl") & (summary.dataset != "average")]
    assert avg.hm == pytest.approx(per.hm.mean())  # mean of per-dataset HMs, as the paper averages


def test_killed_sweep_resumes(session: Session) -> None:
    specs = b2n_specs(["perl"], ["dtd", "ucf101"], options={"perl": {"steps": 1}})
    session.run(specs[0])
    first = session.store.path_for(specs[0]).stat().st_mtime_ns
    session.sweep(specs)
    assert session.store.path_for(specs[0]).stat().st_mtime_ns == first  # not recomputed
    assert session.store.path_for(specs[1]).is_file()


def test_corrupt_result_file_is_recomputed(session: Session) -> None:
    spec = RunSpec("b2n", "zeroshot", "caltech101")
    session.run(spec)
    session.store.path_for(spec).write_text("{ truncated")
    with pytest.warns(UserWarning, match="unreadable result file"):
        result = session.run(spec)
    assert "metrics" in result


def test_transfer_covers_source_targets_and_variants(session: Session) -> None:
    (result,) = session.sweep(transfer_specs(["perl"], options={"perl": {"steps": 1}}))
    table = transfer_table([result])
    assert len(table) == 1 + 10 + 4 + 2
    assert result["counts"]["imagenet_a_test"] > 0


def test_ablation_and_dynamics(session: Session) -> None:
    summary = run_ablation(session, "steps", [1, 2], ["eurosat"])
    assert set(summary.value) == {"1", "2"}
    dyn = reasoning_dynamics(session, RunSpec("b2n", "perl", "eurosat"))
    assert list(dyn.step.unique()) == [0, 1, 2, 3, 4]
    assert (dyn[dyn.step == 0].kl_from_step0.abs() < 1e-6).all()


def test_unknown_profile_and_fields() -> None:
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        get_profile("huge")
    with pytest.raises(ValueError, match="unknown profile field"):
        get_profile("paper", colour="red")
    assert get_profile("paper", data_root="/x").data_root == "/x"


def test_a_mini_world_brings_its_weights_data_and_store() -> None:
    """The book's world (2) writes the store ``mini``; world 1 reads its own folder and shipped weights and writes its
    own store, so its results never mix with the book's; the data identity (in every result's fingerprint) is the
    world's."""
    book, world1 = get_profile("mini"), get_profile("mini", world="1")
    assert (book.world, book.store_name) == ("2", "mini") and get_profile("mini", world="2") == book
    assert book.pretrained.endswith("assets/mini-2/mini-clip.pt")
    assert world1.store_name == "mini-world1" and world1.pretrained.endswith("assets/mini/mini-clip.pt")
    assert world1.sha256 != book.sha256 and world1.data_identity().startswith("mini-world-1-")
    assert book.data_identity().startswith("mini-world-2-")
    own = get_profile("mini", world="1", pretrained="/tmp/mine.pt")
    assert own.store_name.startswith("mini-mini-clip-") and own.store_name != get_profile(
        "mini", pretrained="/tmp/mine.pt").store_name
    with pytest.raises(ValueError, match="unknown mini world '9'"):
        get_profile("mini", world="9")
    with pytest.raises(ValueError, match="mini world version"):
        get_profile("paper", world="2")


def test_spec_key_is_stable_and_sensitive() -> None:
    a, b = RunSpec("b2n", "perl", "dtd"), RunSpec("b2n", "perl", "dtd", options={"steps": 2})
    assert a.key == RunSpec("b2n", "perl", "dtd").key and a.key != b.key
    assert Path(a.filename).suffix == ".json"


def test_shipped_results_and_checkpoints_are_read_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import perlkit.experiments.store as store_module

    shipped, cache = tmp_path / "shipped", tmp_path / "cache"
    monkeypatch.setattr(store_module, "SHIPPED_RESULTS", shipped)
    monkeypatch.setenv("PERLKIT_CACHE", str(cache))
    spec = RunSpec(kind="b2n", method="perl", dataset="dtd", seed=1, profile="mini")
    store = ResultStore("mini")
    assert store.get(spec) is None and store.find_checkpoint(spec) is None
    name = spec.filename.replace(".json", ".pt")
    for folder in (cache / "checkpoints" / "mini", shipped / "checkpoints" / "mini"):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(b"x")
        assert store.find_checkpoint(spec) == folder / name  # the shipped one wins once it exists
    store.put(spec, {"schema": store_module.RESULT_SCHEMA, "spec": spec.to_dict(), "where": "cache"})
    assert store.get(spec)["where"] == "cache" and store.path_for(spec).parent == cache / "results" / "mini"
    (shipped / "mini").mkdir(parents=True)
    (shipped / "mini" / spec.filename).write_text(
        json.dumps({"schema": store_module.RESULT_SCHEMA, "spec": spec.to_dict(), "where": "shipped"}))
    assert store.get(spec)["where"] == "shipped"


def test_rmma_ablations_are_rmma_runs_under_its_own_recipe() -> None:
    """R-MMA's component ablation and its d / alpha / lambda sweep are ordinary R-MMA runs (issue 22)."""
    from perlkit.experiments import RMMA_COMPONENTS, ablation_method, ablation_options, ablation_order, ablation_specs
    from perlkit.experiments.sweeps import full_sweep_specs

    pairs = ablation_specs("rmma_component", None, ["dtd"], [1], protocol="default")
    assert [v for v, _ in pairs] == list(RMMA_COMPONENTS)
    assert {spec.method for _, spec in pairs} == {"rmma"} and {spec.protocol for _, spec in pairs} == {"default"}
    assert ablation_options("rmma_component", "w/o MAR") == {"mar": False}
    assert ablation_options("rmma_dim", 32) == {"dim": 32} and ablation_method("steps") == "perl"
    assert ablation_order("rmma_component", ["unshared", "full R-MMA"]) == ["full R-MMA", "unshared"]
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation_method("rmma_depth")
    with pytest.raises(ValueError, match="w/o MAR"):
        ablation_options("rmma_component", "w/o everything")
    sweep = full_sweep_specs("mini", (1,), ["rmma_ablations"])
    assert {s.method for s in sweep} == {"rmma"} and len(sweep) == 11 * (6 + 2 + 2 + 2)  # the default run once
    assert ablation_options("rmma_dim", 64) == {} == ablation_options("steps", 4)  # the published method itself
