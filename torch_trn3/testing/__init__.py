"""Pieces the torch_trn3 tests and benchmarks share, shipped in the package.

Why here and not in ``tests/``: the same small model is used by in-process
pytest modules, by distributed rank programs that ``tests/distributed/launch.py``
starts as fresh interpreters, by subprocess probes, and by the scripts in
``benchmarks/`` run from any directory. The installed package name is the one
thing all of them can import without editing ``sys.path``; a ``tests/models.py``
would need a path insert in every benchmark and would clash with
``tests/distributed/models.py`` (both import as ``models``). The module needs
only torch, so shipping it costs users nothing, and it lets anyone reproduce
the benchmark model (``TinyDecoder(**BENCHMARK_DECODER)``).

The examples keep their own self-contained models on purpose (see their
comments): an example is read and copied on its own.
"""
from .models import BENCHMARK_DECODER, TinyDecoder, lm_loss

__all__ = ["BENCHMARK_DECODER", "TinyDecoder", "lm_loss"]
