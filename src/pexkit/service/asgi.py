"""ASGI entry point for ``pexkit serve`` (reads PEXKIT_DB and PEXKIT_ADMIN_KEY)."""

from __future__ import annotations

import os

from pexkit.service.app import create_app

app = create_app(
    db=os.environ.get("PEXKIT_DB", "sqlite:///pexkit.db"),
    admin_key=os.environ.get("PEXKIT_ADMIN_KEY"),
)
