"""squeeze-ota: the `ota` command line and the end-to-end demo (the top of the tree).

The wire contract (generated stubs, TLS helpers, path rules) lives in ``otawire``.
"""

__version__ = "0.1.0"
