"""What tests and benches share (not installed, not product code):

- ``helpers.py``, ``variants.py``: model variants (successors, a model that fails its self-test);
- ``faultlink.py``: a TCP relay that drops, stalls and resets connections;
- ``cluster.py``: registry replicas as subprocesses;
- ``pg.py``: PostgreSQL DSNs with a per-test schema.

Benches import this, never ``tests``.
"""
