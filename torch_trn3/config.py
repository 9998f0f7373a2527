"""The emulated machine, read once from the environment at import.

- ``TRN3_CHIPS``: Trainium chips in this process's machine (default 1).
- ``TRN3_LNC`` (or AWS's ``NEURON_LOGICAL_NC_CONFIG``): NeuronCores per
  logical device, 1, 2 or 8 (default 2, the Trainium default).
- ``TRN3_CHIP``: ``trn3`` (default) or ``trn2``, which chip spec to model.
- ``TORCH_TRN3_DEVICE``: the device name, ``trn`` (default) or ``neuron``
  (AWS's own backend's name, so scripts written for real Trainium run as is).

Bad values raise ``ValueError`` naming the variable and the allowed values.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

from .hw.lnc import ALLOWED_LNC, MAX_LOGICAL_DEVICES, LogicalDeviceSpec, logical_device
from .hw.specs import ChipSpec, chip_from_env

DEVICE_NAMES = ("trn", "neuron")


@dataclass(frozen=True)
class MachineConfig:
    """What the process sees: chips x (cores / LNC) logical devices."""

    device_name: str
    chip: ChipSpec
    chips: int
    lnc: int
    logical: LogicalDeviceSpec

    @property
    def device_count(self) -> int:
        return self.chips * self.chip.cores_per_chip // self.lnc


def _read_int(environ: Mapping[str, str], name: str, allowed: Optional[tuple] = None) -> Optional[int]:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or (allowed is not None and value not in allowed) or value < 1:
        allowed_text = ", ".join(map(str, allowed)) if allowed else "a positive integer"
        raise ValueError(f"{name}={raw!r} is invalid: allowed values are {allowed_text}")
    return value


def read_machine_config(environ: Optional[Mapping[str, str]] = None) -> MachineConfig:
    """Parses and validates the environment (``os.environ`` by default)."""
    env = os.environ if environ is None else environ
    name = env.get("TORCH_TRN3_DEVICE", "trn") or "trn"
    if name not in DEVICE_NAMES:
        raise ValueError(
            f"TORCH_TRN3_DEVICE={name!r} is invalid: allowed values are {', '.join(DEVICE_NAMES)}"
        )
    lnc = _read_int(env, "TRN3_LNC", ALLOWED_LNC)
    neuron_lnc = _read_int(env, "NEURON_LOGICAL_NC_CONFIG", ALLOWED_LNC)
    if lnc is not None and neuron_lnc is not None and lnc != neuron_lnc:
        raise ValueError(
            f"TRN3_LNC={lnc} and NEURON_LOGICAL_NC_CONFIG={neuron_lnc} disagree: set one of them"
        )
    lnc = lnc or neuron_lnc or 2
    chips = _read_int(env, "TRN3_CHIPS") or 1
    chip = chip_from_env(env)
    config = MachineConfig(name, chip, chips, lnc, logical_device(chip, lnc))
    if config.device_count > MAX_LOGICAL_DEVICES:
        raise ValueError(
            f"TRN3_CHIPS={chips} gives {config.device_count} logical devices; "
            f"at most {MAX_LOGICAL_DEVICES} are supported"
        )
    return config
