"""The book's widget JavaScript from npm: pinned tarballs checked by digest, and the config naming what is installed."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest
import yaml

from perlkit import offline_js
from perlkit.offline_js import ASSETS, SITE_FOLDER, NpmAsset, OfflineJsError, extract, sri_digest

ROOT = Path(__file__).resolve().parent.parent


def _tarball(path: Path, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_sri_digest_is_npms_format() -> None:
    # sha512 of nothing, as `npm view` prints integrity strings
    assert sri_digest(b"") == ("sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6"
                               "+SfaPg==")


def test_extract_checks_the_digest_and_copies_only_the_wanted_files(tmp_path: Path) -> None:
    tarball = tmp_path / "pkg.tgz"
    data = _tarball(tarball, {"package/dist/embed-amd.js": b"js", "package/dist/a.woff2": b"font",
                              "package/dist/embed.js.map": b"map", "package/src/x.ts": b"ts"})
    asset = NpmAsset("pkg@1.0.0", sri_digest(data), ("package/dist/embed-amd.js", "package/dist/*.woff2"))
    target = tmp_path / "out"
    target.mkdir()
    assert sorted(extract(asset, tarball, target)) == ["a.woff2", "embed-amd.js"]
    assert sorted(p.name for p in target.iterdir()) == ["a.woff2", "embed-amd.js"]
    with pytest.raises(OfflineJsError, match="not the pinned"):
        extract(NpmAsset("pkg@1.0.0", sri_digest(b"other"), asset.members), tarball, target)
    with pytest.raises(OfflineJsError, match="nothing in the tarball matches"):
        extract(NpmAsset("pkg@1.0.0", asset.integrity, ("package/dist/*.ttf",)), tarball, target)


def test_install_lays_out_the_folder_and_the_glue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = tmp_path / "pkg.tgz"
    data = _tarball(tarball, {"package/require.js": b"require"})
    monkeypatch.setattr(offline_js, "npm_pack", lambda spec, folder: tarball)
    root = offline_js.install(tmp_path / "site", [NpmAsset("requirejs@9", sri_digest(data), ("package/require.js",))])
    assert sorted(p.name for p in (root / SITE_FOLDER).iterdir()) == ["offline.js", "require.js"]
    assert (root / offline_js.STAMP).is_file()
    assert "__jupyter_widgets_assets_path__" in (root / SITE_FOLDER / "offline.js").read_text()


def test_config_makefile_and_pins_agree() -> None:
    """_config.yml loads exactly the files the installer lays out, from the folder the Makefile fills."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]
    makefile = (ROOT / "Makefile").read_text()
    folder = re.search(r"^OFFLINE_JS := (\S+)$", makefile, flags=re.M).group(1)
    assert config["html_extra_path"] == [folder]
    installed = {"offline.js", *(Path(m).name for a in ASSETS for m in a.members if "*" not in m)}
    site_folder = SITE_FOLDER.removeprefix("_static/")
    assert [k.removeprefix(f"{site_folder}/") for k in config["nb_ipywidgets_js"]] == [
        "offline.js", "require.js", "embed-amd.js"]  # the glue first: it configures require.js before it loads
    assert set(k.removeprefix(f"{site_folder}/") for k in config["nb_ipywidgets_js"]) <= installed
    assert "sphinx-mathjax-offline" in config["extensions"]
    for asset in ASSETS:
        assert re.fullmatch(r"@?[\w./-]+@\d+\.\d+\.\d+", asset.spec) and asset.integrity.startswith("sha512-")
