"""The event store (SQLAlchemy Core over SQLite or PostgreSQL)."""

from pexkit.store.db import EventStore

__all__ = ["EventStore"]
