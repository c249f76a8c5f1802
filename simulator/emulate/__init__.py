"""Validation of the simulator against real agents on shaped links (``ota simulate --emulate``)."""
