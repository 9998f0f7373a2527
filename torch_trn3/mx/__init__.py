"""MX (microscaling) numerics of Trainium3: OCP MXFP8/MXFP4 block formats.

Quantizing is one C++ op (``torch.ops.torch_trn3.quantize_mx``), the rest pure
torch ops; everything runs on CPU tensors and, unchanged, on the ``trn``
device. See ``README.md`` in this folder for the module map.
"""

from .formats import (E8M0_EXPONENT_BIAS, MX_BLOCK_SIZE, NVFP4_BLOCK_SIZE, ElemFormat,
                      ScaleMode)
from .matmul import mx_grouped_mm, mx_mm, w4a8_linear
from .mx_tensor import MXTensor, from_mx, to_mx
from .nvfp4 import NVFP4ComputeError, NVFP4Tensor, to_nvfp4
from .sparsity import SPARSITY_PATTERNS, StructuredSparseTensor, prune_structured, sparse_mm
from .training import MXLinear, convert_to_mx_training, mx_linear

__all__ = [
    "E8M0_EXPONENT_BIAS", "MX_BLOCK_SIZE", "NVFP4_BLOCK_SIZE", "ElemFormat", "ScaleMode",
    "MXTensor", "to_mx", "from_mx",
    "mx_mm", "mx_grouped_mm", "w4a8_linear",
    "NVFP4Tensor", "NVFP4ComputeError", "to_nvfp4",
    "SPARSITY_PATTERNS", "StructuredSparseTensor", "prune_structured", "sparse_mm",
    "MXLinear", "convert_to_mx_training", "mx_linear",
]
