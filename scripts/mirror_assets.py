"""Fill `assets/<dataset>/` from local copies instead of the network.

Why: CI and this team's machines have no internet. Two kinds of local copy
are accepted:

* a mirror of the raw upstream files, laid out as `<owner>+<repo>/<path in
  repo>` (see shared/datasets/upstream/UPSTREAM.md): the asset list, URLs and
  checksums live only in `project.yml`; this script maps each URL to its
  mirror path, checks md5 (the `checksum` weasel uses) and sha256, and copies;
* a datasets folder in the layout of the dataset MANIFEST
  (`<name>/<split>.iob.gz`, the normalised files): used for every raw file
  the mirror cannot give, copied to `assets/<dataset>/<name>/<split>.iob.gz`,
  which `spacy_spandec.corpus` reads in place of the raw file. The normalised
  files carry no checksum in project.yml; the converter's stats.json counts
  can be checked against the MANIFEST.

OntoNotes 5 (LDC licence, no URL) is always taken in the normalised format.

    python scripts/mirror_assets.py DATASET [--mirror DIR] [--datasets-dir DIR] [--ontonotes-dir DIR]

Defaults: --mirror $SPANDEC_DATA_MIRROR; --datasets-dir $SPANDEC_DATASETS_DIR,
else the folder holding the mirror; --ontonotes-dir $SPANDEC_ONTONOTES_DIR,
else `ontonotes5/` in the datasets folder (or beside or inside the mirror).
Files already in place with the right checksums are kept, so after `spacy
project assets` (download) this only verifies. Exit status 1 with one line
per problem and its fix.
"""

import argparse
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import urlparse

import srsly

from spacy_spandec.corpus import raw_splits

RAW_HOST = "raw.githubusercontent.com"


def mirror_relpath(url: str) -> Path:
    """`https://raw.githubusercontent.com/OWNER/REPO/COMMIT/PATH` -> `OWNER+REPO/PATH`."""
    parsed = urlparse(url)
    parts = parsed.path.strip("/").split("/")
    if parsed.netloc != RAW_HOST or len(parts) < 4:
        raise ValueError(
            f"Cannot map {url} to a mirror path: expected https://{RAW_HOST}/OWNER/REPO/COMMIT/PATH"
        )
    owner, repo, _commit, *path = parts
    return Path(f"{owner}+{repo}", *path)


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_problem(path: Path, asset: Dict[str, Any]) -> Optional[str]:
    """None if `path` has the asset's md5 (`checksum`) and `sha256`, when declared."""
    for key, algorithm in (("checksum", "md5"), ("sha256", "sha256")):
        expected = asset.get(key)
        if expected and file_digest(path, algorithm) != expected.lower():
            return f"{algorithm} of {path} is {file_digest(path, algorithm)}, expected {expected}"
    return None


def dataset_assets(project_dir: Path, dataset: str) -> List[Dict[str, Any]]:
    """The project.yml assets whose `dest` is under `assets/<dataset>/`."""
    config = srsly.read_yaml(project_dir / "project.yml")
    prefix = f"assets/{dataset}/"
    return [a for a in config.get("assets", []) if a.get("dest", "").startswith(prefix)]


def resolve_mirror(mirror: Optional[Path]) -> Optional[Path]:
    """Accept the mirror itself or the datasets folder holding it in `upstream/`."""
    if mirror is not None and not any(mirror.glob("*+*")) and (mirror / "upstream").is_dir():
        return mirror / "upstream"
    return mirror


def default_ontonotes_dir(mirror: Optional[Path], datasets_dir: Optional[Path]) -> Optional[Path]:
    candidates = [] if datasets_dir is None else [datasets_dir / "ontonotes5"]
    if mirror is not None:
        candidates += [mirror / "ontonotes5", mirror.parent / "ontonotes5"]
    return next((c for c in candidates if c.is_dir()), candidates[-1] if candidates else None)


def default_datasets_dir(mirror: Optional[Path]) -> Optional[Path]:
    """The mirror itself if it holds normalised files, else the folder holding it."""
    if mirror is None:
        return None
    return mirror if any(mirror.glob("*/*.iob.gz")) else mirror.parent


def normalised_names(dataset: str) -> Dict[str, str]:
    """Asset `dest` -> the MANIFEST name of the same file ("conllpp/train")."""
    raw_dir = Path("assets") / dataset
    return {
        str(source.path): source.name
        for sources in raw_splits(dataset, raw_dir).values()
        for source in sources
    }


def copy_file(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(source, tmp)
    tmp.replace(dest)


def mirror_assets(
    project_dir: Path,
    dataset: str,
    mirror: Optional[Path],
    ontonotes_dir: Optional[Path],
    datasets_dir: Optional[Path] = None,
) -> List[str]:
    """Copy or verify the assets of `dataset`; returns the problems found."""
    assets = dataset_assets(project_dir, dataset)
    if not assets:
        return [f"project.yml declares no asset under assets/{dataset}/"]
    names = normalised_names(dataset)
    problems = []
    for asset in assets:
        dest = project_dir / asset["dest"]
        if dest.is_file() and checksum_problem(dest, asset) is None:
            print(f"ok      {asset['dest']} (already in place)")
            continue
        if asset.get("url"):
            name = names.get(asset["dest"])
            normalised = (
                None if datasets_dir is None or name is None else datasets_dir / f"{name}.iob.gz"
            )
            source = None if mirror is None else mirror / mirror_relpath(asset["url"])
            if (
                (source is None or not source.is_file())
                and normalised is not None
                and normalised.is_file()
            ):
                copy_file(normalised, project_dir / "assets" / dataset / f"{name}.iob.gz")
                print(
                    f"copied  assets/{dataset}/{name}.iob.gz <- {normalised} (normalised, for {asset['dest']})"
                )
                continue
            if source is None:
                problems.append(
                    f"{asset['dest']}: missing, and no mirror or datasets folder has it. Set SPANDEC_DATA_MIRROR to "
                    f"the folder laid out as <owner>+<repo>/<path> (e.g. ../shared/datasets/upstream) or "
                    f"SPANDEC_DATASETS_DIR to a folder with the normalised {name}.iob.gz (e.g. ../shared/datasets), "
                    f"or download with `spacy project assets`."
                )
                continue
            fix = f"put the bytes of {asset['url']} there"
        else:
            if ontonotes_dir is None:
                problems.append(
                    f"{asset['dest']}: user-supplied file missing. Set SPANDEC_ONTONOTES_DIR to a folder with "
                    f"{{train,dev,test}}.iob.gz (format: assets/README.md), or put the file at {asset['dest']} yourself."
                )
                continue
            source = ontonotes_dir / Path(asset["dest"]).name
            fix = "provide it in the normalised format described in assets/README.md"
        if not source.is_file():
            problems.append(f"{asset['dest']}: source file not found: {source} ({fix})")
            continue
        problem = checksum_problem(source, asset)
        if problem:
            problems.append(
                f"{asset['dest']}: checksum mismatch: {problem}. The mirror copy is not the pinned file; {fix}."
            )
            continue
        copy_file(source, dest)
        print(f"copied  {asset['dest']} <- {source}")
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="conllpp | crossner | ontonotes5 | bc5cdr")
    parser.add_argument(
        "--mirror", default="", help="mirror folder (default: $SPANDEC_DATA_MIRROR)"
    )
    parser.add_argument(
        "--datasets-dir",
        default="",
        help="folder of normalised <name>/<split>.iob.gz files (default: $SPANDEC_DATASETS_DIR)",
    )
    parser.add_argument(
        "--ontonotes-dir", default="", help="folder with OntoNotes {train,dev,test}.iob.gz"
    )
    parser.add_argument("--project-dir", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    mirror_text = args.mirror or os.environ.get("SPANDEC_DATA_MIRROR", "")
    mirror = resolve_mirror(Path(mirror_text)) if mirror_text else None
    datasets_text = args.datasets_dir or os.environ.get("SPANDEC_DATASETS_DIR", "")
    datasets_dir = Path(datasets_text) if datasets_text else default_datasets_dir(mirror)
    ontonotes_text = args.ontonotes_dir or os.environ.get("SPANDEC_ONTONOTES_DIR", "")
    ontonotes_dir = (
        Path(ontonotes_text) if ontonotes_text else default_ontonotes_dir(mirror, datasets_dir)
    )
    problems = mirror_assets(args.project_dir, args.dataset, mirror, ontonotes_dir, datasets_dir)
    for problem in problems:
        print(f"ERROR   {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
