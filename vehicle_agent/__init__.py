"""The in-car agent: TUF client over gRPC, update engine, A/B slots, ONNX Runtime serving."""
