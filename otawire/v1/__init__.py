"""Generated gRPC stubs for protos/otawire/v1 (see otawire/protogen.py)."""
