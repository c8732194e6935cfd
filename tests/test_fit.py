"""PERL on a user's own data: the image-folder and CSV readers, their errors, and fit -> save -> load -> predict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import perlkit
from perlkit.backbone import FrozenCLIP, create_backbone
from perlkit.cli import main
from perlkit.data import DatasetError, load_own_data, own_split_file, require_shots, sample_fewshot
from perlkit.data.custom import SPLIT_FILE, stratified_split, write_image_folder
from perlkit.engine import CheckpointError
from perlkit.files import StoreError
from perlkit.fit import FitResult, fit_own_data, load, read_fit, save_fit
from perlkit.methods import build_method, list_methods
from perlkit.profiles import get_profile

COLOURS = {"red_apple": (200, 40, 40), "green_leaf": (40, 180, 60), "blue_sky": (50, 80, 210), "grey_rock": (128,) * 3}
#: small-but-faithful options of the rivals for the 32-wide tiny backbone (as in test_rivals.py)
TINY_OPTIONS = {"mmrl": {"rep_dim": 64}, "mmrlpp": {"rep_dim": 64, "proj_rank": 8}, "rmma": {"dim": 16}}
#: recorded on the tiny random-weight CLIP (CPU, one thread): 3 classes x 20 synthetic images, PERL with 4 shots, seed 1
#: (the accuracies of a random-weight CLIP on 18 test images mean nothing; the losses pin reader, split, sampler, loader
#: and the training loop end to end)
RECORDED = {"zero-shot": 33.333333333333336, "perl": 0.0}
RECORDED_LOSSES = [1.6878455877304077, 1.2911072969436646, 1.1533839702606201]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERLKIT_CACHE", str(tmp_path / "cache"))


def write_images(folder: Path, colour: tuple[int, ...], count: int, seed: int, ext: str = ".png") -> None:
    """``count`` noisy 32x32 images of one colour."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = np.clip(np.array(colour) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i:03d}{ext}")


def make_folder(root: Path, classes: int = 3, per_class: int = 20) -> Path:
    for k, (name, colour) in enumerate(list(COLOURS.items())[:classes]):
        write_images(root / name, colour, per_class, seed=k)
    return root


def tiny_profile():  # noqa: ANN201
    """The tiny random-weight CLIP on the CPU, without loader worker processes."""
    return get_profile("paper", model="tiny-clip", pretrained="random", device="cpu", num_workers=0,
                       eval_batch_size=64, threads=1)


# ---------------------------------------------------------------------------------------------- readers
def test_image_folder_reader_labels_split_and_ignored_files(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "fruit")
    (data / "README.txt").write_text("not an image")
    (data / "red_apple" / "notes.txt").write_text("ignored, like the benchmark readers do")
    (data / "split_fewshot").mkdir()  # perlkit's own cache folder is never a class
    splits = load_own_data(data)
    assert splits.classnames == ["blue sky", "green leaf", "red apple"]  # sorted folders, underscores read as spaces
    assert splits.name == "fruit" and splits.template == "a photo of a {}."
    for split, per_class in (("train", 10), ("val", 4), ("test", 6)):  # 50 / 20 / 30 %, as Dassl's read_and_split_data
        items = getattr(splits, split)
        assert [sum(d.label == k for d in items) for k in range(3)] == [per_class] * 3
        assert all(Path(d.impath).is_file() and Path(d.impath).parent.name.replace("_", " ") == d.classname
                   for d in items)
    written = json.loads((data / SPLIT_FILE).read_text())
    assert own_split_file(data) == data / SPLIT_FILE
    assert [entry[0] for entry in written["test"]] == [str(Path(d.impath).relative_to(data)) for d in splits.test]
    assert written["test"][0][1:] == [splits.test[0].label, splits.test[0].classname]  # split_zhou entries


def test_split_is_reused_seeded_and_stale_splits_are_refused(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "a")
    first = load_own_data(data)
    copy = shutil.copytree(data, tmp_path / "b", ignore=shutil.ignore_patterns(SPLIT_FILE))
    assert [Path(d.impath).name for d in load_own_data(copy).test] == [Path(d.impath).name for d in first.test]
    stored = json.loads((data / SPLIT_FILE).read_text())
    stored["test"], stored["train"] = stored["train"], stored["test"]  # a deliberate, different split is reused as is
    (data / SPLIT_FILE).write_text(json.dumps(stored))
    assert load_own_data(data).test == first.train
    gone = data / "red_apple" / "img_000.png"
    gone.unlink()
    with pytest.raises(DatasetError, match=r"split_perlkit\.json is stale: 1 image\(s\) it lists no longer exist .*"
                                           r"red_apple/img_000\.png\); delete .* to draw a new split"):
        load_own_data(data)
    write_images(data / "red_apple", COLOURS["red_apple"], 21, seed=5)  # restores img_000 and adds img_020
    with pytest.raises(DatasetError, match=r"the data holds 1 image\(s\) it does not list \(first: red_apple/img_020"):
        load_own_data(data)


def test_split_goes_to_the_cache_when_the_data_folder_is_read_only(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import perlkit.data.custom as custom

    data = make_folder(tmp_path / "readonly")
    real = custom.atomic_write_json

    def refuse_beside_data(path: Path, payload: object) -> Path:
        if Path(path).parent == data:
            raise StoreError(f"could not write {path}: Read-only file system")
        return real(path, payload)

    monkeypatch.setattr(custom, "atomic_write_json", refuse_beside_data)
    splits = load_own_data(data)
    where = own_split_file(data)
    assert not (data / SPLIT_FILE).exists() and where is not None and where.is_relative_to(tmp_path / "cache")
    assert load_own_data(data) == splits  # reused from the cache


def test_renames_from_txt_and_json(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d")
    (data / "classnames.txt").write_text("red_apple\tGranny's apple\nblue_sky clear blue sky\n\n")
    assert load_own_data(data).classnames == ["clear blue sky", "green leaf", "Granny's apple"]
    (data / "classnames.txt").unlink()
    (data / "classnames.json").write_text(json.dumps({"green_leaf": "fern"}))
    assert load_own_data(data).classnames == ["blue sky", "fern", "red apple"]
    (data / "classnames.txt").write_text("red_apple apple\n")
    with pytest.raises(DatasetError, match="both .*classnames.txt and .*classnames.json rename the classes"):
        load_own_data(data)
    (data / "classnames.json").unlink()
    (data / "classnames.txt").write_text("red_appel apple\n")
    with pytest.raises(DatasetError, match=r"classnames.txt renames 'red_appel', which is not a class of the data"):
        load_own_data(data)
    (data / "classnames.txt").write_text("red_apple\n")
    with pytest.raises(DatasetError, match=r"classnames.txt:1: expected 'folder<TAB or space>class name'"):
        load_own_data(data)


def test_csv_reader_with_and_without_a_split_column(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "imgs")
    rows = [(f"imgs/{c}/img_{i:03d}.png", c, "test" if i < 5 else "train") for c in COLOURS if (data / c).is_dir()
            for i in range(20)]
    given = tmp_path / "given.csv"
    given.write_text("path,label,split\n" + "".join(f"{p},{c},{s}\n" for p, c, s in rows))
    splits = load_own_data(given)
    assert splits.name == "given" and splits.root == str(tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45, 0, 15)
    assert splits.classnames == ["blue sky", "green leaf", "red apple"] and own_split_file(given) is None
    plain = tmp_path / "plain.csv"
    plain.write_text("".join(f"{p},{c}\n" for p, c, _ in rows))  # no header, no split: perlkit draws one
    splits = load_own_data(plain)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 12, 18)
    assert own_split_file(plain) == tmp_path / "split_perlkit_plain.json"
    few = sample_fewshot(splits, 4, seed=1, cache=False)  # the Dassl sampler works on own data unchanged
    assert len(few.train) == 12 and {d.label for d in few.train} == {0, 1, 2}


# ---------------------------------------------------------------------------------------------- errors
def test_bad_folders_are_one_line_errors_naming_the_culprit(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "d")
    (data / "empty_class").mkdir()
    with pytest.raises(DatasetError, match=r"class folder .*empty_class holds no images"):
        load_own_data(data)
    (data / "empty_class").rmdir()
    (data / "red_apple" / "img_999.jpg").write_text("<html>not found</html>")
    with pytest.raises(DatasetError, match=r"img_999\.jpg has an image extension but is not a readable image"):
        load_own_data(data)
    (data / "red_apple" / "img_999.jpg").unlink()
    (data / "classnames.txt").write_text("green_leaf red apple\n")
    with pytest.raises(DatasetError, match=r"classes 'green_leaf' and 'red_apple' .* both have the class name "
                                           r"'red apple' after renaming by .*classnames.txt"):
        load_own_data(data)
    one = make_folder(tmp_path / "one", classes=1)
    with pytest.raises(DatasetError, match=r"found only class 'red_apple'; classification needs at least 2 classes"):
        load_own_data(one)
    few = make_folder(tmp_path / "few", per_class=3)
    with pytest.raises(DatasetError, match=r"class 'blue sky' .* has 3 image\(s\); a train/val/test split needs at "
                                           "least 4"):
        load_own_data(few)
    with pytest.raises(DatasetError, match="does not exist"):
        load_own_data(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"must contain exactly one '\{\}'"):
        load_own_data(data, template="a photo")


def test_fewer_training_images_than_shots_says_how_many(tmp_path: Path) -> None:
    splits = load_own_data(make_folder(tmp_path / "d"))
    require_shots(splits, 10)
    with pytest.raises(DatasetError, match=r"class 'blue sky' of .* has 10 training image\(s\) \(of 20; the rest are "
                                           r"held out .*\), fewer than --shots 16: pass --shots 10 or fewer"):
        require_shots(splits, 16)
    csv = tmp_path / "given.csv"
    csv.write_text("path,label,split\n" + "".join(f"d/red_apple/img_{i:03d}.png,apple,{'train' if i < 8 else 'test'}\n"
                                                  f"d/blue_sky/img_{i:03d}.png,sky,test\n" for i in range(10)))
    with pytest.raises(DatasetError, match=r"class 'sky' of .* has no training image \(of 10\); mark some"):
        require_shots(load_own_data(csv), 4)


GOOD_ROWS = "".join(f"imgs/red_apple/img_{i:03d}.png,apple\nimgs/blue_sky/img_{i:03d}.png,sky\n" for i in range(10))


@pytest.mark.parametrize(("text", "message"), [
    ("path,label\n" + GOOD_ROWS + "imgs/red_apple/missing.png,apple\n",
     r"data.csv row 22: image 'imgs/red_apple/missing.png' not found"),
    ("path,label\n" + GOOD_ROWS + "imgs/notes.txt,apple\n", r"row 22: 'imgs/notes.txt' is not an image file name"),
    ("path,label,split\nimgs/red_apple/img_000.png,apple,train\nimgs/blue_sky/img_000.png,sky,tset\n",
     r"row 3: split 'tset' is not one of train, val, test"),
    ("path,label\n" + GOOD_ROWS + "imgs/red_apple/img_000.png,apple\n",
     r"rows 2 and 22 both list image 'imgs/red_apple/img_000.png'"),
    ("path,label\n" + GOOD_ROWS + "imgs/red_apple/img_011.png\n",
     r"row 22: expected 2 fields like the first row, got 1"),
])
def test_bad_csv_rows_name_row_and_path(tmp_path: Path, text: str, message: str) -> None:
    make_folder(tmp_path / "imgs")
    csv = tmp_path / "data.csv"
    csv.write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_own_data(csv)


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_folder(tmp_path / "d")
    assert main(["fit", "--data", str(data), "--shots", "16", "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("perlkit fit: error: class 'blue sky'") and "--shots 10" in err
    assert main(["predict", "--checkpoint", str(tmp_path / "none.safetensors"), "x.png"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_write_image_folder_refuses_to_mix_with_other_images(tmp_path: Path) -> None:
    source = load_own_data(make_folder(tmp_path / "src"))
    dest = write_image_folder(source.test, tmp_path / "dest", classes=["red apple", "blue sky"], per_class=4)
    assert sorted(p.name for p in dest.iterdir()) == ["blue sky", "red apple"]
    assert write_image_folder(source.test, dest, classes=["red apple", "blue sky"], per_class=4) == dest  # idempotent
    with pytest.raises(DatasetError, match="already holds 'blue sky'"):
        write_image_folder(source.test, dest, classes=["red apple"], per_class=4)


# ---------------------------------------------------------------------------------------------- fit, load, predict
@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, FitResult]:
    """PERL fitted on a 3-class x 20-image folder with the tiny CLIP, 4 shots."""
    root = tmp_path_factory.mktemp("fit")
    data = make_folder(root / "colours")
    result = fit_own_data(data, "perl", shots=4, profile=tiny_profile(), out=root / "perl.safetensors",
                          progress=False)
    return data, root / "perl.safetensors", result


def test_fit_saves_a_safetensors_checkpoint_with_its_metadata(fitted) -> None:  # noqa: ANN001
    data, path, result = fitted
    assert {row: v["accuracy"] for row, v in result.metrics.items()} == pytest.approx(RECORDED)
    assert result.losses == pytest.approx(RECORDED_LOSSES, rel=1e-5)
    assert result.counts["train_images"] == 12 and result.counts["steps"] == 3 and result.counts["test_base"] == 18
    assert path.stat().st_size == result.checkpoint_bytes < 100_000
    assert result.device.startswith("CPU")  # the paper profile's tiny CLIP on a machine without CUDA
    tensors, meta = read_fit(path)
    assert meta["method"] == "perl" and meta["classnames"] == ["blue sky", "green leaf", "red apple"]
    assert meta["template"] == "a photo of a {}." and meta["perlkit_version"] == perlkit.__version__
    assert meta["backbone"]["model"] == "tiny-clip" and len(meta["backbone"]["weights_sha256"]) == 64
    assert meta["profile"] == {"name": "paper", "model": "tiny-clip", "pretrained": "random"}
    assert sum(t.numel() for t in tensors.values()) == result.trainable_params > 0
    assert meta["fit"]["metrics"] == result.metrics


def test_load_predicts_what_fit_measured_and_differs_from_untrained(fitted) -> None:  # noqa: ANN001
    data, path, result = fitted
    model = perlkit.load(path)  # the lazy top-level import
    assert model.classes == result.classes and model.method.backbone.model_name == "tiny-clip"
    splits = load_own_data(data)
    top = model.predict([d.impath for d in splits.test], top_k=3)
    accuracy = 100 * np.mean([t[0][0] == d.classname for t, d in zip(top, splits.test, strict=True)])
    assert accuracy == pytest.approx(result.metrics["perl"]["accuracy"])  # the loaded model is the evaluated one
    assert all(len(t) == 3 and t[0][1] >= t[1][1] >= t[2][1] for t in top)
    torch.manual_seed(0)
    untrained = build_method("perl", model.method.backbone)
    trained = model.method.trainable_state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in untrained.trainable_state_dict().items())
    tensors, _ = read_fit(path)
    assert all(torch.equal(trained[k], v) for k, v in tensors.items())
    picture = Image.open(splits.test[0].impath)
    for one in (model.predict(picture, top_k=3), model.predict(splits.test[0].impath, top_k=3)):
        assert [label for label, _ in one[0]] == [label for label, _ in top[0]]
        assert [score for _, score in one[0]] == pytest.approx([score for _, score in top[0]], abs=1e-5)


def test_open_vocabulary_at_prediction_time(fitted) -> None:  # noqa: ANN001
    data, path, _ = fitted
    model = load(path)
    image = next((data / "red_apple").iterdir())
    names = ["cherry", "lime", "ocean", "stone"]
    (top,) = model.predict([image], top_k=10, classes=names)
    assert sorted(label for label, _ in top) == sorted(names) and sum(s for _, s in top) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="distinct"):
        model.predict([image], classes=["a", "a"])


def test_checkpoint_refuses_other_weights_and_other_models(fitted) -> None:  # noqa: ANN001
    _, path, _ = fitted
    other = create_backbone("tiny-clip", None)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    with pytest.raises(CheckpointError, match=rf"{path.name} was fitted on other 'tiny-clip' weights"):
        load(path, backbone=other)
    deep = create_backbone("tiny-clip-deep", None)
    with pytest.raises(CheckpointError, match=rf"{path.name} was fitted on backbone 'tiny-clip', not 'tiny-clip-deep'"):
        load(path, backbone=deep)
    bogus = path.with_name("bogus.safetensors")
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bogus.safetensors is not a readable .safetensors checkpoint"):
        load(bogus)


def test_cli_fit_and_predict(tmp_path: Path, fitted, capsys: pytest.CaptureFixture) -> None:  # noqa: ANN001
    data, path, result = fitted
    image = str(next((data / "green_leaf").iterdir()))
    assert main(["predict", "--checkpoint", str(path), image, "--top-k", "2", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["image"] == image and [p["label"] for p in shown["top_k"]] == [
        label for label, _ in load(path).predict(image, top_k=2)[0]]
    out = tmp_path / "cli.safetensors"
    args = ["fit", "--data", str(data), "--method", "perl", "--shots", "4", "--profile", "paper", "--model",
            "tiny-clip", "--pretrained", "random", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "zero-shot" in printed and "perl" in printed and f"checkpoint: {out}" in printed
    assert read_fit(out)[0].keys() == read_fit(path)[0].keys()


@pytest.mark.parametrize("method", list_methods())
def test_every_method_goes_through_the_same_path(tmp_path: Path, fitted, method: str) -> None:  # noqa: ANN001
    data, _, _ = fitted
    out = tmp_path / f"{method}.safetensors"
    result = fit_own_data(data, method, shots=2, profile=tiny_profile(), out=out, options=TINY_OPTIONS.get(method),
                          progress=False)
    model = load(out)
    splits = load_own_data(data)
    top = model.predict([d.impath for d in splits.test], top_k=1)
    accuracy = 100 * np.mean([t[0][0] == d.classname for t, d in zip(top, splits.test, strict=True)])
    assert accuracy == pytest.approx(result.metrics[method]["accuracy"])
    assert result.trainable_params == sum(t.numel() for t in read_fit(out)[0].values())


def test_base_novel_trains_on_half_the_classes(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "four", classes=4)
    result = fit_own_data(data, "perl", shots=2, profile=tiny_profile(), base_novel=True,
                          out=tmp_path / "bn.safetensors", progress=False)
    assert result.trained_classes == ["blue sky", "green leaf"] and len(result.classes) == 4
    assert set(result.metrics["perl"]) == {"base", "novel", "hm"} and result.counts["test_novel"] == 12
    assert load(tmp_path / "bn.safetensors").trained_classes == ["blue sky", "green leaf"]
    with pytest.raises(DatasetError, match="--base-novel needs at least 4 classes"):
        fit_own_data(make_folder(tmp_path / "three"), "perl", shots=2, profile=tiny_profile(), base_novel=True,
                     out=tmp_path / "x.safetensors", progress=False)


def test_perl_checkpoint_on_vitb16_is_under_100_kb(tmp_path: Path, vitb16_backbone: FrozenCLIP) -> None:
    method = build_method("perl", vitb16_backbone)
    assert method.num_trainable() == 6_402
    result = FitResult(checkpoint="", method="perl", data="", name="x", classes=["a", "b"], trained_classes=["a", "b"],
                       template="a photo of a {}.", shots=16, seed=1, base_novel=False, profile="paper",
                       profile_label="", model="ViT-B-16", trainable_params=6_402, metrics={}, counts={},
                       split_file="", train_seconds=0.0, seconds=0.0)
    path = save_fit(method, tmp_path / "vitb16.safetensors", result, {"name": "paper", "model": "ViT-B-16",
                                                                      "pretrained": "random"})
    assert 6_402 * 4 < path.stat().st_size < 100_000
    assert load(path, backbone=vitb16_backbone).method.num_trainable() == 6_402


def test_stratified_split_needs_four_images_a_class(tmp_path: Path) -> None:
    split = stratified_split([(f"a/{i}", 0) for i in range(4)] + [(f"b/{i}", 1) for i in range(5)], ["a", "b"],
                             tmp_path)
    assert [len(split[s]) for s in ("train", "val", "test")] == [4, 2, 3]  # 2+1+1 and 2+1+2 (round half to even)


def test_import_perlkit_stays_light() -> None:
    code = "import sys, perlkit; assert callable(perlkit.load); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
