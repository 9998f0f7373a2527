"""One kernel call: its device, its on-chip memory, its charges and its report.

Why a context object: NKI calls (``nl.ndarray``, ``nisa.*``) take no device
or kernel argument, yet each must know which device timeline to charge,
how much SBUF/PSUM the kernel holds and which chip's limits apply. ``jit``
opens a :class:`KernelContext` for the call; the calls find it with
:func:`current`.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch

from .. import _C
from ..hw import isa_cost
from ..hw.cost import Engine
from ..hw.lnc import logical_device
from .dtypes import PackedDtype, check_dtype, dtype_name, itemsize
from .errors import NkiBufferError, NkiCapacityError, NkiTileLimitError, NkiUninitializedReadError, NkiUsageError
from .memory import MATMUL_WRITTEN, WRITTEN, Allocation, MemoryRegion, ensure_state, state_view
from .report import KernelReport

_STACK: List["KernelContext"] = []

#: Engines a kernel report lists, in the profiler's lane order.
ENGINES = (Engine.TENSOR, Engine.VECTOR, Engine.SCALAR, Engine.GPSIMD, Engine.DMA)


def current(instruction: str) -> "KernelContext":
    """The kernel being run; :class:`NkiUsageError` outside ``@nki.jit``."""
    if not _STACK:
        raise NkiUsageError(instruction, "called outside an @nki.jit kernel")
    return _STACK[-1]


class KernelContext:
    """State of one kernel call (see module doc)."""

    def __init__(self, name: str, device: Optional[torch.device], chip, lnc: int):
        from .. import _C

        self.name = name
        self.device = device
        self.chip = chip
        self.limits = isa_cost.limits(chip)
        self.logical = logical_device(chip, lnc)
        self.timed = device is not None and device.type != "cpu" and _C._model_enabled() \
            and not torch.compiler.is_compiling()
        self.dev_index = device.index if device is not None and device.index is not None else 0
        self.sbuf_used = 0
        self.psum_banks_used = 0
        self.sbuf_peak = 0
        self.psum_peak = 0
        # Indexed by Engine.value (enum hashing is slow on the per-instruction path).
        self.busy = [0.0] * (max(e.value for e in ENGINES) + 1)
        self.count = [0] * len(self.busy)
        self._costs = {}
        self.flops = 0.0
        self.hbm_bytes = 0.0
        #: Scalar Engine reduce registers (one fp32 per lane); None until reset.
        self.act_regs: Optional[torch.Tensor] = None
        self.n_allocs = 0
        #: shared_hbm allocations of an SPMD launch, and this instance's count of them.
        self.shared: list = []
        self.shared_index = -1
        self._start_s = 0.0
        self._stream = None

    # ------------------------------------------------------------ lifetime
    def __enter__(self):
        if self.timed:
            from .. import _C

            stream = torch.trn.current_stream(self.device)
            # The kernel starts when the work before it on its stream is done.
            event = torch.trn.Event()
            event.record(stream)
            stream.wait_event(event)
            self._stream = stream
            self._store_stream = _store_stream(self.device)
            self._store_stream.wait_event(event)
            self._start_s = _C._stream_now(self.dev_index, stream.stream_id)
        _STACK.append(self)
        return self

    def __exit__(self, *exc):
        _STACK.remove(self)
        if self.timed:
            # The kernel is done when its stores are.
            done = torch.trn.Event()
            done.record(self._store_stream)
            self._stream.wait_event(done)
        return False

    def report(self) -> KernelReport:
        elapsed = 0.0
        if self.timed:
            from .. import _C

            elapsed = _C._stream_now(self.dev_index, self._stream.stream_id) - self._start_s
        peak = self.chip.tensor.peak_flops_per_core("bf16")
        return KernelReport(
            kernel=self.name, device=str(self.device), chip=self.chip.name, elapsed_s=elapsed,
            busy_s={e.name.lower(): self.busy[e.value] for e in ENGINES},
            instructions={e.name.lower(): self.count[e.value] for e in ENGINES},
            flops=self.flops, hbm_bytes=self.hbm_bytes, peak_bf16_flops=peak,
            sbuf_peak_bytes_per_partition=self.sbuf_peak, psum_peak_banks=self.psum_peak,
        )

    # ----------------------------------------------------------- allocation
    def allocate(self, shape, dtype, buffer: MemoryRegion, name: str, where: str):
        from .tensor import NkiTensor

        check_dtype(dtype, where)
        shape = tuple(int(s) for s in shape)
        if any(s <= 0 for s in shape) or not shape:
            raise NkiTileLimitError(where, f"shape {list(shape)} must have positive dims", tile=name)
        self.n_allocs += 1
        name = name or f"{buffer.value}_{self.n_allocs}"
        packed = isinstance(dtype, PackedDtype)
        torch_dtype = dtype.element if packed else dtype
        store_shape = shape + ((dtype.pack,) if packed else ())
        if buffer.on_chip:
            lim = self.limits
            desc = f"{name} {list(shape)} {dtype_name(dtype)} in {buffer.value}"
            if shape[0] > lim.pmax:
                raise NkiTileLimitError(where, f"partition dim {shape[0]} exceeds the {lim.pmax} partitions",
                                        tile=desc, limit=f"nl.tile_size.pmax = {lim.pmax}")
            pp_bytes = math.prod(shape[1:]) * itemsize(dtype)
            banks = 0
            if buffer is MemoryRegion.sbuf:
                if self.sbuf_used + pp_bytes > lim.sbuf_bytes_per_partition:
                    raise NkiCapacityError(
                        where, f"SBUF full: {self.sbuf_used} B per partition live + {pp_bytes} B "
                        f"for this tile > {lim.sbuf_bytes_per_partition} B per partition",
                        tile=desc, limit=f"{self.chip.core_memory.sbuf_bytes // (1 << 20)} MiB SBUF per core "
                        f"({self.chip.name}) / {lim.pmax} partitions")
                self.sbuf_used += pp_bytes
                self.sbuf_peak = max(self.sbuf_peak, self.sbuf_used)
            else:
                banks = -(-pp_bytes // lim.psum_bank_bytes)
                if self.psum_banks_used + banks > lim.psum_banks:
                    raise NkiCapacityError(
                        where, f"PSUM full: {self.psum_banks_used} banks live + {banks} for this tile "
                        f"> {lim.psum_banks} banks", tile=desc,
                        limit=f"PSUM = {lim.psum_banks} banks x {lim.psum_bank_bytes} B per partition "
                        f"({self.chip.core_memory.psum_bytes // (1 << 20)} MiB per core)")
                self.psum_banks_used += banks
                self.psum_peak = max(self.psum_peak, self.psum_banks_used)
            data = torch.empty(store_shape, dtype=torch_dtype)
            alloc = Allocation(buffer, name, dtype, data, ctx=self, pp_bytes=pp_bytes, banks=banks)
        else:
            if buffer is MemoryRegion.shared_hbm and self.grid:
                # SPMD: every program instance sees the same shared_hbm tensors,
                # matched by the order the kernel allocates them in.
                self.shared_index += 1
                if self.shared_index < len(self.shared):
                    from .tensor import NkiTensor as _T

                    alloc = self.shared[self.shared_index]
                    return _T(alloc, alloc.data)
            if self.device is None or self.device.type == "cpu":
                device_tensor = torch.empty(store_shape, dtype=torch_dtype)
                data = device_tensor
            else:
                from .. import _C

                device_tensor = torch.empty(store_shape, dtype=torch_dtype, device=self.device)
                data = _C._cpu_view(device_tensor)
            alloc = Allocation(buffer, name, dtype, data, device_tensor=device_tensor)
            if buffer is MemoryRegion.shared_hbm and self.grid:
                self.shared.append(alloc)
        return NkiTensor(alloc, alloc.data)

    def release(self, alloc: Allocation) -> None:
        if alloc.buffer is MemoryRegion.sbuf:
            self.sbuf_used -= alloc.pp_bytes
        else:
            self.psum_banks_used -= alloc.banks

    def wrap_input(self, tensor: torch.Tensor, name: str):
        """A kernel argument as a read-only HBM tensor (a zero-copy view)."""
        from .tensor import NkiTensor

        if tensor.device.type == "cpu":
            data = tensor
        else:
            from .. import _C

            data = _C._cpu_view(tensor)
        alloc = Allocation(MemoryRegion.hbm, name, tensor.dtype, data, device_tensor=tensor, read_only=True)
        return NkiTensor(alloc, data)

    # ------------------------------------------------------------- state checks
    def check_read(self, t, instruction: str, role: str) -> None:
        """:class:`NkiUninitializedReadError` if any element of ``t`` was never written."""
        alloc = t.alloc
        if alloc.full:
            return
        if alloc.state is None or not bool(state_view(alloc, t.data).all()):
            what = "before any matmul wrote it" if alloc.buffer is MemoryRegion.psum else "before anything wrote it"
            raise NkiUninitializedReadError(instruction, f"{role} reads {alloc.buffer.value} {what}",
                                            tile=t.describe())

    def check_write(self, t, instruction: str, role: str = "dst") -> None:
        if t.alloc.read_only:
            raise NkiBufferError(instruction, f"{role} is a kernel input, which kernels may not write "
                                 "(allocate an output with nl.ndarray(..., buffer=nl.shared_hbm))",
                                 tile=t.describe())

    def mark_written(self, t, matmul: bool = False) -> None:
        alloc = t.alloc
        alloc.written_once = True
        if not alloc.buffer.on_chip:
            return
        if t.data.numel() == alloc.data.numel():
            alloc.full = True
            alloc.all_mm = matmul
            alloc.state = None
            return
        if alloc.full and not matmul and alloc.buffer is MemoryRegion.sbuf:
            return  # SBUF stays fully written; only PSUM tracks which elements matmuls wrote
        state = ensure_state(alloc)
        state_view(alloc, t.data).fill_(MATMUL_WRITTEN if matmul else WRITTEN)
        if matmul:
            if not alloc.all_mm:
                alloc.all_mm = bool((state == MATMUL_WRITTEN).all())
        else:
            alloc.all_mm = False
        if not alloc.full:
            alloc.full = bool(state.all())

    # ---------------------------------------------------------------- charging
    def cost(self, fn, *args):
        """``fn(chip, *args)`` (an :mod:`isa_cost` function), memoized per kernel call."""
        key = (fn, args)
        cost = self._costs.get(key)
        if cost is None:
            cost = self._costs[key] = fn(self.chip, *args)
        return cost

    def lane_cost(self, engine, free_elems: int, passes: float = 1.0, transcendental: bool = False):
        """:func:`isa_cost.lane` on this kernel's chip, memoized per kernel call
        (hashing the chip spec on every instruction would cost more than the rest).
        :meth:`cost` would do, but keying by the engine's value instead of the
        enum (whose hash is a Python call) saves ~0.4 us of the ~9 us an
        instruction costs the host."""
        key = (engine._value_, free_elems, passes, transcendental)
        cost = self._costs.get(key)
        if cost is None:
            cost = self._costs[key] = isa_cost.lane(self.chip, engine, free_elems, passes, transcendental)
        return cost

    def charge(self, op: str, cost: isa_cost.InstructionCost, reads, writes, store: bool = False) -> None:
        """Schedules one instruction on its engine: it waits for the tiles it reads
        (and, after their first write, for the tiles it writes) and makes the
        tiles it writes ready when it ends. ``store``: a DMA into HBM, issued on
        the kernel's store queue (see :func:`_store_stream`)."""
        engine = cost.engine._value_
        self.busy[engine] += cost.seconds
        self.count[engine] += 1
        self.flops += cost.flops
        self.hbm_bytes += cost.hbm_bytes
        if not self.timed:
            return
        ins = [t.alloc.dep for t in reads]
        outs = []
        for w in writes:
            alloc = w.alloc
            if alloc.timeline_written:
                ins.append(alloc.dep)
            else:
                alloc.timeline_written = True
            outs.append(alloc.dep)
        if store:
            torch.accelerator.set_stream(self._store_stream)
            try:
                _C._charge(op, self.dev_index, engine, cost.seconds, cost.flops, cost.hbm_bytes,
                           ins, outs, cost.memory_s, cost.compute_s)
            finally:
                torch.accelerator.set_stream(self._stream)
            return
        _C._charge(op, self.dev_index, engine, cost.seconds, cost.flops, cost.hbm_bytes,
                   ins, outs, cost.memory_s, cost.compute_s)


_STORE_STREAMS: dict = {}


def _store_stream(device: torch.device):
    """The second DMA queue of kernels on ``device``: DMAs into HBM (stores).

    Why: the device timeline keeps one in-order DMA queue per stream, but a
    NeuronCore drives 16 DMA queues, so a store waiting for the compute that
    produces its tile does not hold back the loads issued after it. Stores
    run on this stream's queue, loads on the kernel's own; the kernel starts
    both when it starts and ends when both are done.
    """
    stream = _STORE_STREAMS.get(device)
    if stream is None:
        stream = _STORE_STREAMS[device] = torch.trn.Stream(device=device)
    return stream


def _grid_methods():
    """SPMD launch grid (``kernel[2, 2](...)``): this instance's ids."""

    def program_id(self, axis: int = 0) -> int:
        if not 0 <= axis < max(1, len(self.grid)):
            raise NkiUsageError("nki.language.program_id", f"axis {axis} outside the launch grid {self.grid}")
        return self.pid[axis] if self.grid else 0

    def num_programs(self, axis: int = 0) -> int:
        return self.grid[axis] if self.grid else 1

    KernelContext.program_id = program_id
    KernelContext.num_programs = num_programs
    KernelContext.grid = ()
    KernelContext.pid = ()


_grid_methods()
