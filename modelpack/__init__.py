"""What a model package is, shared by the registry and the agent: the model
zoo, codecs (Deep Compression, zstd, deltas) and fidelity checks."""
