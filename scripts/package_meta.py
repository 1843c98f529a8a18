"""Write the meta.json `spacy package --meta-path` uses: the trained model's
meta plus a requirement on the installed spacy-spandec.

Why: the packaged pipeline needs the plugin's registered factories at
`spacy.load` time; spaCy only adds requirements it can trace to installed
distributions, so the requirement is stated explicitly here.

    python scripts/package_meta.py MODEL_DIR OUTPUT_JSON
"""
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import srsly
from spacy.util import get_minor_version_range

DISTRIBUTION = "spacy-spandec"


def plugin_requirement() -> str:
    try:
        installed = version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source checkout
        from spacy_spandec.about import __version__ as installed
    return DISTRIBUTION + get_minor_version_range(installed)


def main(model_dir: str, output: str) -> None:
    meta = srsly.read_json(Path(model_dir) / "meta.json")
    others = [r for r in meta.get("requirements", []) if not r.replace("_", "-").startswith(DISTRIBUTION)]
    meta["requirements"] = [plugin_requirement()] + others
    srsly.write_json(output, meta)
    print(f"{output}: requirements {meta['requirements']}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
