"""``torch.trn``: the device module, shaped like ``torch.cuda``.

PyTorch's libraries (autocast, DTensor, FSDP2, checkpointing, the RNG
helpers) look these functions up on the device module by name, so names and
signatures follow ``torch.cuda``. Memory numbers are the allocator's
accounting against each logical device's modelled HBM capacity.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

import torch

from . import _C
from .config import read_machine_config

_config = read_machine_config()
_NAME = _config.device_name

DeviceLike = Union[torch.device, str, int, None]


# ---------------------------------------------------------------- devices
def is_available() -> bool:
    return _C._device_count() > 0


def is_initialized() -> bool:
    return True


def _lazy_init() -> None:
    """Nothing to do: the emulated devices exist from import on."""


def _is_in_bad_fork() -> bool:
    return False


def device_count() -> int:
    return _C._device_count()


def current_device() -> int:
    return _C._current_device()


def _device_index(device: DeviceLike, optional: bool = True) -> int:
    """Index of ``device`` (current device for None), checked like CUDA's."""
    if device is None:
        return current_device()
    if isinstance(device, int):
        index = device
    else:
        device = torch.device(device)
        if device.type != _NAME:
            raise ValueError(f"Expected a {_NAME} device, but got: {device}")
        index = current_device() if device.index is None else device.index
    if not 0 <= index < device_count():
        raise IndexError(
            f"{_NAME}: invalid device index {index}: this machine has {device_count()} "
            f"logical device(s) (TRN3_CHIPS={_config.chips} x 8 NeuronCores / TRN3_LNC={_config.lnc})"
        )
    return index


def set_device(device: DeviceLike) -> None:
    _C._set_device(_device_index(device))


class device:
    """Context manager that changes the current device, like ``torch.cuda.device``."""

    def __init__(self, device: DeviceLike):
        self.idx = -1 if device is None else _device_index(device)
        self.prev_idx = -1

    def __enter__(self):
        self.prev_idx = current_device()
        if self.idx >= 0:
            _C._set_device(self.idx)
        return self

    def __exit__(self, *exc):
        _C._set_device(self.prev_idx)
        return False


class device_of(device):
    """Context manager that makes the device of ``obj`` (a tensor) current."""

    def __init__(self, obj: torch.Tensor):
        super().__init__(obj.get_device() if obj.device.type == _NAME else None)


def synchronize(device: DeviceLike = None) -> None:
    """Kernels run synchronously on the host: this only validates ``device``."""
    _device_index(device)


@dataclass(frozen=True)
class _DeviceProperties:
    """What ``get_device_properties`` reports for one logical device."""

    name: str
    index: int
    total_memory: int
    lnc: int
    cores: int
    chip: str
    hbm_bandwidth: float
    peak_bf16_flops: float
    peak_fp32_flops: float
    peak_mx_flops: float

    @property
    def multi_processor_count(self) -> int:
        return self.cores

    def __repr__(self) -> str:
        return (
            f"_TrnDeviceProperties(name='{self.name}', total_memory={self.total_memory // 2**20}MB, "
            f"lnc={self.lnc}, cores={self.cores})"
        )


def get_device_properties(device: DeviceLike = None) -> _DeviceProperties:
    index = _device_index(device)
    spec = _config.logical
    return _DeviceProperties(
        # as AWS's torch.neuron: the chip type ("trn3"/"trn2"), which
        # torchtitan's Trainium peak-FLOPs table looks up
        name=_chip_key() if _NAME == "neuron" else get_device_name(index),
        index=index,
        total_memory=spec.hbm_bytes,
        lnc=spec.lnc,
        cores=spec.cores,
        chip=spec.chip.name,
        hbm_bandwidth=spec.hbm_bytes_per_s,
        peak_bf16_flops=spec.peak_bf16_flops,
        peak_fp32_flops=spec.peak_fp32_flops,
        peak_mx_flops=spec.peak_mx_flops,
    )


def _chip_key() -> str:
    """``TRN3_CHIP``'s value for the modelled chip: "trn3" or "trn2"."""
    from .hw.specs import CHIPS

    return next(key for key, spec in CHIPS.items() if spec.name == _config.chip.name)


def get_device_name(device: DeviceLike = None) -> str:
    _device_index(device)
    if _NAME == "neuron":  # clients (torchtitan) recognise Trainium by "neuron" in the name
        return f"neuron {_chip_key()} ({_config.chip.name} emulated, LNC={_config.lnc})"
    return f"{_config.chip.name} (emulated, LNC={_config.lnc})"


def get_device_capability(device: DeviceLike = None) -> tuple:
    _device_index(device)
    return (3, 0) if _config.chip.name == "Trainium3" else (2, 0)


# ---------------------------------------------------------------- streams and events
class Stream(torch.Stream):
    """An ordering domain on a trn device with its own simulated clock."""

    def __new__(cls, device: DeviceLike = None, priority: int = 0, **kwargs):
        if "stream_id" in kwargs:  # re-wrapping an existing stream
            return super().__new__(cls, **kwargs)
        dev = torch.device(_NAME, _device_index(device))
        return super().__new__(cls, device=dev, priority=priority)


class Event(torch.Event):
    """Records the simulated time of a stream; ``elapsed_time`` is modelled ms."""

    def __new__(cls, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False):
        return super().__new__(
            cls, device=_NAME, enable_timing=enable_timing, blocking=blocking, interprocess=interprocess
        )

    def elapsed_time(self, end_event: torch.Event) -> float:
        """Modelled Trainium milliseconds from this event to ``end_event``.

        (torch.Event's own method accepts only the exact torch.Event type.)
        """
        return _C._event_elapsed_ms(self.event_id, end_event.event_id)


def current_stream(device: DeviceLike = None) -> torch.Stream:
    return torch.accelerator.current_stream(_device_index(device))


def default_stream(device: DeviceLike = None) -> torch.Stream:
    index = _device_index(device)
    device_type = current_stream(index).device_type  # torch.Stream wants the int DeviceType
    return torch.Stream(stream_id=0, device_index=index, device_type=device_type)


def set_stream(stream: torch.Stream) -> None:
    torch.accelerator.set_stream(stream)


@contextlib.contextmanager
def stream(stream: Optional[torch.Stream]):
    """Makes ``stream`` current on its device for the block (None: no-op)."""
    if stream is None:
        yield
        return
    previous_device = current_device()
    previous = current_stream(stream.device_index)
    set_stream(stream)  # also makes the stream's device current
    try:
        yield stream
    finally:
        set_stream(previous)
        set_device(previous_device)


# ---------------------------------------------------------------- random numbers
default_generators = tuple(_C._default_generator(i) for i in range(_C._device_count()))


def manual_seed(seed: int) -> None:
    default_generators[current_device()].manual_seed(int(seed))


def manual_seed_all(seed: int) -> None:
    for gen in default_generators:
        gen.manual_seed(int(seed))


def seed() -> None:
    default_generators[current_device()].seed()


def seed_all() -> None:
    s = default_generators[0].seed()
    for gen in default_generators[1:]:
        gen.manual_seed(s)


def initial_seed() -> int:
    return default_generators[current_device()].initial_seed()


def get_rng_state(device: DeviceLike = "trn" if _NAME == "trn" else "neuron") -> torch.Tensor:
    """16 bytes: seed (uint64) then offset (uint64), as CUDA's Philox state."""
    return default_generators[_device_index(device)].get_state()


def set_rng_state(new_state: torch.Tensor, device: DeviceLike = "trn" if _NAME == "trn" else "neuron") -> None:
    default_generators[_device_index(device)].set_state(new_state.to("cpu", torch.uint8))


def get_rng_state_all() -> List[torch.Tensor]:
    return [g.get_state() for g in default_generators]


def set_rng_state_all(new_states: List[torch.Tensor]) -> None:
    for gen, state in zip(default_generators, new_states):
        gen.set_state(state.to("cpu", torch.uint8))


# ---------------------------------------------------------------- memory
def memory_stats(device: DeviceLike = None) -> Dict[str, Any]:
    return dict(sorted(_C._memory_stats(_device_index(device)).items()))


def memory_allocated(device: DeviceLike = None) -> int:
    return memory_stats(device)["allocated_bytes.all.current"]


def max_memory_allocated(device: DeviceLike = None) -> int:
    return memory_stats(device)["allocated_bytes.all.peak"]


def memory_reserved(device: DeviceLike = None) -> int:
    return memory_stats(device)["reserved_bytes.all.current"]


def max_memory_reserved(device: DeviceLike = None) -> int:
    return memory_stats(device)["reserved_bytes.all.peak"]


def reset_peak_memory_stats(device: DeviceLike = None) -> None:
    _C._reset_peak_memory_stats(_device_index(device))


def reset_accumulated_memory_stats(device: DeviceLike = None) -> None:
    _C._reset_accumulated_memory_stats(_device_index(device))


def reset_max_memory_allocated(device: DeviceLike = None) -> None:
    reset_peak_memory_stats(device)


def mem_get_info(device: DeviceLike = None) -> tuple:
    """(free, total) bytes of the device's modelled HBM."""
    return tuple(_C._mem_get_info(_device_index(device)))


def empty_cache() -> None:
    """Nothing is cached: freed device memory returns to the host at once."""


# ---------------------------------------------------------------- dtypes
def is_bf16_supported(including_emulation: bool = True) -> bool:
    return True


def get_amp_supported_dtype() -> List[torch.dtype]:
    # float32 as CUDA accepts it: torchtitan's MoE router runs under
    # torch.autocast(device_type, dtype=torch.float32) to keep routing in fp32.
    return [torch.bfloat16, torch.float16, torch.float32]

