"""torch.compile for trn: inductor code generation for the device, the
``trn3`` graph compiler, and the compile report.

Nothing here is imported at ``import torch``: :mod:`._hooks` registers the
pieces when dynamo is first imported.
"""
from __future__ import annotations
