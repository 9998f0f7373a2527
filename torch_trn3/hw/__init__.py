"""The Trainium chip and system model: pure Python, no torch dispatch.

Everything the emulator charges (engine time, HBM capacity and bandwidth,
collective cost) is computed here from the specs in :mod:`.specs`, so the
model can be unit-tested with plain numbers and read without the C++ core.
"""
