"""Profiler for trn devices: what the modelled Trainium did, op by op.

::

    import torch_trn3.profiler as tp

    with tp.profile() as prof:
        train_step()
    print(prof.summary())                    # step time, MFU/HFU, engines, top ops, advice
    prof.export_chrome_trace("trace.json")   # one process per device, one lane per engine
    prof.plot("profile.png")                 # optional: needs matplotlib

Modules: ``_records`` (OpRecord, cost re-derivation), ``_scopes`` (module
paths via nn.Module hooks), ``_stats`` (grouping, tables), ``_advice``
(recommendation rules), ``_trace`` (Chrome trace), ``_plot`` (PNG).
"""
from ._advice import Advice
from ._profile import profile, scope
from ._records import ENGINE_NAMES, OpRecord
from ._stats import CollectiveStats, OpStats, Step

__all__ = ["profile", "scope", "OpRecord", "OpStats", "Step", "CollectiveStats", "Advice", "ENGINE_NAMES"]
