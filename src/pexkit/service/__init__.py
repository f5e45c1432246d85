"""The decision service: FastAPI app over the event store (adapter layer)."""
