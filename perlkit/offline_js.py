"""The JavaScript the book's widget pages run, installed from the npm registry so the site works offline.

MyST-NB points widget pages at require.js and the ipywidgets HTML manager on public CDNs. ``make html`` runs
``python -m perlkit.offline_js _build/offline-js`` instead: it fetches the two pinned npm tarballs with
``npm pack`` (only the tarball, none of the manager's build-time dependencies: its ``dist/`` bundle is
self-contained), checks each against the pinned SRI digest, and lays out ``_static/ipywidgets/`` under the folder,
which ``_config.yml`` names in ``html_extra_path`` and ``nb_ipywidgets_js``, with a few lines of glue (``GLUE``) that
widget pages run before require.js. MathJax comes from PyPI instead (``sphinx-mathjax-offline``, a Sphinx extension
in the book extra). Nothing here is committed; a reader's browser never leaves the site.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: where the files land inside the built site (``_static/`` + this); ``_config.yml`` names the same folder
SITE_FOLDER = "_static/ipywidgets"
#: written last, so a folder that has it is complete (the Makefile's target)
STAMP = ".installed"
#: ``_static/ipywidgets/offline.js``, listed first in ``nb_ipywidgets_js``: it runs before require.js and the manager
GLUE = """\
// perlkit/offline_js.py wrote this: the ipywidgets HTML manager served by the site itself, beside this file.
(() => {
  const here = new URL(".", document.currentScript.src).href;
  // The manager loads its Font Awesome files from beside its module URL, which require.js derives from the module's
  // name relative to the page (book/@jupyter-widgets/html-manager/dist/): map that name to this folder. require.js
  // reads a global `require` object, set before it loads, as its configuration.
  window.require = { paths: { "@jupyter-widgets/html-manager/dist": here.replace(/\\/$/, "") } };
  window.__jupyter_widgets_assets_path__ = here;
  // @jupyter-widgets/base typesets widget labels through MathJax 2's MathJax.Hub.Queue; the book loads MathJax 3,
  // which has no Hub (each label threw): hand those calls to MathJax 3's typesetPromise.
  document.addEventListener("DOMContentLoaded", () => {
    const mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub || !String(mathjax.version || "").startsWith("3")) return;
    mathjax.Hub = {
      Queue: (...jobs) => jobs.forEach(([command, , element]) => {
        if (command !== "Typeset") return;
        mathjax.startup.promise.then(() => mathjax.typesetPromise(element ? [element] : undefined));
      }),
    };
  });
})();
"""


@dataclass(frozen=True)
class NpmAsset:
    """One pinned npm package and the files the site needs from its tarball."""

    spec: str  # name@exact-version
    integrity: str  # the registry's SRI digest of the tarball (npm view SPEC dist.integrity)
    members: tuple[str, ...]  # glob patterns inside the tarball (paths start with package/)


ASSETS: tuple[NpmAsset, ...] = (
    NpmAsset(
        "requirejs@2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        ("package/require.js",),
    ),
    # ipywidgets 8 embeds with html-manager ^1.0 (ipywidgets.__html_manager_version__); the bundle carries the base,
    # controls and output widgets and the Font Awesome files it loads from beside itself
    NpmAsset(
        "@jupyter-widgets/html-manager@1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        ("package/dist/embed-amd.js", "package/dist/*.woff2", "package/dist/*.woff", "package/dist/*.ttf",
         "package/dist/*.eot", "package/dist/*.svg"),
    ),
)


class OfflineJsError(RuntimeError):
    """npm is missing, or a tarball is not the pinned one."""


def sri_digest(data: bytes) -> str:
    """The Subresource Integrity string npm records for a tarball (sha512, base64)."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def npm_pack(spec: str, folder: Path) -> Path:
    """Download one package's tarball (no dependencies, no install scripts) into ``folder`` with npm's own client."""
    npm = shutil.which("npm")
    if npm is None:
        raise OfflineJsError("npm is needed to install the book's widget JavaScript: sudo apt-get install npm")
    done = subprocess.run([npm, "pack", spec, "--json", "--pack-destination", str(folder)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise OfflineJsError(f"npm pack {spec} failed:\n{done.stderr.strip()}")
    return folder / json.loads(done.stdout)[0]["filename"]


def extract(asset: NpmAsset, tarball: Path, target: Path) -> list[str]:
    """Check the tarball against the pinned digest and copy the wanted members, flat, into ``target``."""
    found = sri_digest(tarball.read_bytes())
    if found != asset.integrity:
        raise OfflineJsError(f"{asset.spec}: tarball digest {found} is not the pinned {asset.integrity}")
    copied, matched = [], set()
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            patterns = {p for p in asset.members if fnmatch.fnmatchcase(member.name, p)}
            if member.isfile() and patterns:
                name = Path(member.name).name
                (target / name).write_bytes(archive.extractfile(member).read())
                copied.append(name)
                matched |= patterns
    missing = sorted(set(asset.members) - matched)
    if missing:
        raise OfflineJsError(f"{asset.spec}: nothing in the tarball matches {missing}")
    return copied


def install(root: Path, assets: Sequence[NpmAsset] = ASSETS) -> Path:
    """Lay out ``root/_static/ipywidgets`` from the pinned tarballs; the old folder is replaced only when all
    of the new one is in place."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{root.name}-") as scratch:
        scratch = Path(scratch)
        staged = scratch / "site"
        target = staged / SITE_FOLDER
        target.mkdir(parents=True)
        versions = {}
        for asset in assets:
            extract(asset, npm_pack(asset.spec, scratch), target)
            versions[asset.spec] = asset.integrity
        (target / "offline.js").write_text(GLUE)
        (staged / STAMP).write_text(json.dumps(versions, indent=1) + "\n")
        if root.exists():
            shutil.rmtree(root)
        staged.rename(root)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m perlkit.offline_js FOLDER``: the Makefile's install step for the book's widget JavaScript."""
    parser = argparse.ArgumentParser(prog="python -m perlkit.offline_js", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the folder _config.yml names in html_extra_path")
    args = parser.parse_args(argv)
    try:
        root = install(args.folder)
    except OfflineJsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"book JavaScript: {', '.join(a.spec for a in ASSETS)} -> {root / SITE_FOLDER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
