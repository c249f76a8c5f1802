"""Generated gRPC stubs for protos/ota/v1 (see ota/protogen.py)."""
