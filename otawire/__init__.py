"""The wire contract shared by the registry, the vehicle agent, the simulator and the benches.

The bottom of the tree: it imports nothing else of this project.

- ``otawire.v1``: the gRPC stubs generated from ``protos/otawire/v1`` (``make protos``);
- ``otawire.tls``: the fleet PKI and mutual TLS on both ends (``otawire.cli_tls``: its
  click options, shared by every networked command);
- ``otawire.paths``: how files are named on the wire (consistent-snapshot target paths,
  the director's and the encodings' prefixes);
- ``otawire.constants``: limits and closed sets both ends agree on.
"""
