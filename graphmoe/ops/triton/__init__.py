"""Triton kernels for CUDA (optional extra ``graphmoe[triton]``).

Triton is imported lazily, on the first call, so importing :mod:`graphmoe.ops` never
requires it. For tests on CPU, set ``TRITON_INTERPRET=1`` *before* the first import of
``triton``: the kernels then run in Triton's interpreter on CPU tensors.
"""
from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphmoe.ops.triton.scatter_mm import scatter_linear

__all__ = ["is_available", "is_interpreted", "scatter_linear"]


def is_available() -> bool:
    """Whether the ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def is_interpreted() -> bool:
    """Whether Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def __getattr__(name: str) -> Any:
    if name == "scatter_linear":
        from graphmoe.ops.triton.scatter_mm import scatter_linear

        return scatter_linear
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
