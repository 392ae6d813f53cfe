"""argparse options that several `bertkit` commands share (batching, backend, precision)."""

from __future__ import annotations

import argparse

from .runtime import PRECISIONS


def add_batch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="also cap a batch at this many tokens, padding included: bounds memory on long texts")


def add_backend_option(p: argparse.ArgumentParser) -> None:
    from .onnx_backend import BACKENDS

    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help="torch (default); torch-int8: its Linear layers quantized to INT8 on loading (CPU); "
                        "torch-compile: its encoder layers compiled by torch.compile (a one-off compile of 20-60 s; "
                        "no faster on CPU as measured, meant for GPUs); onnx, onnx-fp16, onnx-int8: a directory "
                        "written by `bertkit export` run in ONNX Runtime")
    add_precision_option(p)


def add_precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="the PyTorch model's weights and activations: fp32 (default: outputs as transformers "
                        "computes them), bf16 (GPUs, and CPUs with AMX or AVX512-BF16: faster, outputs off by "
                        "about 1e-2), fp16 (GPUs)")
