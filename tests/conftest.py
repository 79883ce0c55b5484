"""Shared fixtures: a private model cache so tests never touch ~/.cache."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def plain_terminal():
    """Tables rendered as on a pipe with no $COLUMNS (200 wide): pytest-xdist's workers, and some
    CI shells, export COLUMNS=80, which `bench` honours and which would fold the tables the tests
    read."""
    saved = {k: os.environ.pop(k) for k in ("COLUMNS", "LINES") if k in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("model-cache")
    old = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("BENCH_CACHE_DIR", None)
    else:
        os.environ["BENCH_CACHE_DIR"] = old



@pytest.fixture(scope="session")
def bert_model(tmp_path_factory):
    """A BERT-like ONNX graph exported by torch (tests/inputs_models.py), built once per session:
    tests copy it where they need it and never change it."""
    from tests.inputs_models import bert_onnx

    return bert_onnx(tmp_path_factory.mktemp("bert-model"))
