"""squeeze-ota: the `ota` command line and the generated wire contract (`ota.v1`)."""

__version__ = "0.1.0"
