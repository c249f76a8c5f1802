"""The cloud registry: gRPC services, storage, TUF repository, rollouts."""
