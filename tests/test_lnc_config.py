"""Logical devices follow TRN3_LNC / NEURON_LOGICAL_NC_CONFIG and TRN3_CHIPS.

The machine is read once at import, so every configuration runs in its own
interpreter. All of them start together (module fixture) to keep the suite fast.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from trn_testing import GIB, clean_env

PROBE = """
import json
import torch
import torch_trn3
count = torch.trn.device_count()
props = [torch.trn.get_device_properties(i) for i in range(count)]
last = torch.ones(4, device=torch.device("trn", count - 1))
print(json.dumps({
    "device_count": count,
    "accelerator_count": torch.accelerator.device_count(),
    "total_memory": [p.total_memory for p in props],
    "mem_get_info_total": [torch.trn.mem_get_info(i)[1] for i in range(count)],
    "lnc": [p.lnc for p in props],
    "cores": [p.cores for p in props],
    "name": props[0].name,
    "last_device": str(last.device),
    "last_sum": float(last.sum().cpu()),
}))
"""

NEURON_NAME_PROBE = """
import json
import torch
import torch_trn3
x = torch.arange(3.0).to("neuron")
print(json.dumps({"device": str(x.device), "count": torch.neuron.device_count(),
                  "doubled": (x * 2).cpu().tolist()}))
"""

# name -> (env overrides, code)
CASES = {
    "default": ({}, PROBE),
    "lnc1": ({"TRN3_LNC": "1"}, PROBE),
    "lnc8": ({"TRN3_LNC": "8"}, PROBE),
    "neuron_lnc1": ({"NEURON_LOGICAL_NC_CONFIG": "1"}, PROBE),
    "chips2_lnc2": ({"TRN3_CHIPS": "2"}, PROBE),
    "trn2_chip": ({"TRN3_CHIP": "trn2", "TRN3_LNC": "2"}, PROBE),
    "neuron_name": ({"TORCH_TRN3_DEVICE": "neuron"}, NEURON_NAME_PROBE),
    "bad_lnc3": ({"TRN3_LNC": "3"}, PROBE),
    "bad_neuron_lnc": ({"NEURON_LOGICAL_NC_CONFIG": "4"}, PROBE),
    "disagree": ({"TRN3_LNC": "1", "NEURON_LOGICAL_NC_CONFIG": "2"}, PROBE),
    "bad_chip": ({"TRN3_CHIP": "trn9"}, PROBE),
    "bad_chips0": ({"TRN3_CHIPS": "0"}, PROBE),
}


@pytest.fixture(scope="module")
def runs():
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=clean_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (env, code) in CASES.items()
    }
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += "\n<timed out>"
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


def machine(runs, name) -> dict:
    run = runs[name]
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def import_error(runs, name) -> str:
    run = runs[name]
    assert run.returncode != 0, f"import should have failed; stdout: {run.stdout}"
    assert "Segmentation fault" not in run.stderr and run.returncode > 0  # an exception, not a crash
    return run.stderr


# ---------------------------------------------------------------- device counts and capacity
@pytest.mark.parametrize(
    "case, lnc, count",
    [("default", 2, 4), ("lnc1", 1, 8), ("lnc8", 8, 1), ("neuron_lnc1", 1, 8)],
)
def test_device_count_is_eight_cores_over_lnc(runs, case, lnc, count):
    m = machine(runs, case)
    assert m["device_count"] == count
    assert m["accelerator_count"] == count
    assert m["lnc"] == [lnc] * count
    assert m["cores"] == [lnc] * count


@pytest.mark.parametrize(
    "case, expected_gib",
    [("default", 36), ("lnc1", 18), ("lnc8", 144), ("neuron_lnc1", 18)],
)
def test_total_memory_is_144_gib_times_lnc_over_8(runs, case, expected_gib):
    m = machine(runs, case)
    assert m["total_memory"] == [expected_gib * GIB] * m["device_count"]
    assert m["mem_get_info_total"] == m["total_memory"]


def test_every_logical_device_is_usable(runs):
    m = machine(runs, "lnc1")
    assert m["last_device"] == "trn:7"
    assert m["last_sum"] == 4.0


def test_two_chips_double_the_devices(runs):
    m = machine(runs, "chips2_lnc2")
    assert m["device_count"] == 8
    assert m["total_memory"] == [36 * GIB] * 8
    assert m["last_device"] == "trn:7"


def test_trn2_chip_has_96_gib_per_chip(runs):
    m = machine(runs, "trn2_chip")
    assert m["device_count"] == 4
    assert m["total_memory"] == [24 * GIB] * 4  # 96 GiB * 2 / 8
    assert "Trainium2" in m["name"]


def test_device_name_can_be_neuron(runs):
    m = machine(runs, "neuron_name")
    assert m["device"] == "neuron:0"
    assert m["count"] == 4
    assert m["doubled"] == [0.0, 2.0, 4.0]


# ---------------------------------------------------------------- bad values fail at import
def test_lnc_3_fails_at_import_naming_variable_and_allowed_values(runs):
    err = import_error(runs, "bad_lnc3")
    assert "TRN3_LNC" in err
    assert "1, 2, 8" in err


def test_bad_neuron_logical_nc_config_fails_at_import(runs):
    err = import_error(runs, "bad_neuron_lnc")
    assert "NEURON_LOGICAL_NC_CONFIG" in err
    assert "1, 2, 8" in err


def test_disagreeing_lnc_variables_fail_at_import(runs):
    err = import_error(runs, "disagree")
    assert "TRN3_LNC" in err and "NEURON_LOGICAL_NC_CONFIG" in err


def test_unknown_chip_fails_at_import_naming_variable_and_allowed_values(runs):
    err = import_error(runs, "bad_chip")
    assert "TRN3_CHIP" in err
    assert "trn2" in err and "trn3" in err


def test_zero_chips_fails_at_import(runs):
    err = import_error(runs, "bad_chips0")
    assert "TRN3_CHIPS" in err
    assert "positive integer" in err
