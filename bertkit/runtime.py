"""Running a loaded model here: the device, the precision, the backend, and the tokenizer that goes with it.

Shared by every caller that loads a model to use it (the command line, the export checks, a server), so that
`--device auto`, `--precision bf16` or `--backend torch-int8` mean the same thing everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from . import checkpoint, packaged
from .errors import UsageError

if TYPE_CHECKING:
    import torch

    from .tokenizer import Tokenizer

T = TypeVar("T")

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(name: str) -> str:
    """"auto" -> cuda when there is one, else cpu; any other name as given (cpu, cuda:1, ...)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_tokenizer(location: packaged.ModelLocation) -> Tokenizer:
    """The tokenizer of a model directory, or of a packaged model whose vocabulary lives beside it."""
    from .tokenizer import Tokenizer

    if location.vocab_file is None:
        return checkpoint.model_tokenizer(location.model_dir)
    tokenizer = Tokenizer.from_vocab(location.vocab_file, lowercase=location.lowercase)
    checkpoint.check_tokenizer_fits(tokenizer, checkpoint.load_config(location.model_dir), location.vocab_file)
    return tokenizer


def precision_dtype(precision: str) -> torch.dtype:
    """fp32 | bf16 | fp16 -> the torch dtype."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def check_precision(backend: str, precision: str) -> None:
    """Half precision is a setting of the PyTorch model; INT8 and ONNX backends fix their own."""
    if precision != "fp32" and backend not in ("torch", "torch-compile"):
        raise UsageError(f"--precision {precision} applies to the torch and torch-compile backends, not {backend} "
                         "(ONNX in half precision: export with --fp16 and use --backend onnx-fp16)")


def apply_torch_backend(model: T, backend: str, precision: str = "fp32") -> T:
    """The loaded PyTorch model as `backend` and `precision` ask: as it is, INT8-quantized, or with compiled
    encoder layers; its weights cast to half precision first if asked (outputs are read back as float32)."""
    if precision != "fp32":
        model = model.to(precision_dtype(precision))
    if backend == "torch-int8":
        from .quantize import quantize_torch

        return quantize_torch(model)
    if backend == "torch-compile":
        from .infer import compile_encoder

        return compile_encoder(model)
    return model
