"""The event store's tables (SQLAlchemy Core; SQLite and PostgreSQL).

Schema version 2. An experiment's mutable state is one typed JSON document
(:class:`pexkit.service.state.ExperimentState`) guarded by an integer
``version``: every change is a compare-and-swap on that version, so two jobs or
two server processes never overwrite each other's changes. Models, fronts and
tuner states are immutable blobs referenced by id; they are model text plus a
JSON manifest (or plain JSON), never pickles.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 2

metadata = MetaData()

meta = Table(
    "pexkit_meta",
    metadata,
    Column("key", String(50), primary_key=True),
    Column("value", String(200), nullable=False),
)

experiments = Table(
    "experiments",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("tracking", JSON, nullable=False),  # [{name, goal}] logged, not modeled
    Column("salt", String(64), nullable=False),
    Column("version", Integer, nullable=False),  # compare-and-swap guard of `state`
    Column("state", JSON, nullable=False),  # ExperimentState.to_dict()
    Column("duplicates", Integer, nullable=False),  # atomic counter, outside the CAS
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(100), nullable=False),
    Column("experiments", JSON, nullable=True),  # null: every experiment
    Column("label", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

policies = Table(
    "policies",
    metadata,
    Column("experiment", String(64), ForeignKey("experiments.name", ondelete="CASCADE"),
           primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),  # uniform | linear | tree
    Column("params", JSON, nullable=False),
    Column("model_id", Integer, nullable=True),
    Column("label", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment", String(64), ForeignKey("experiments.name", ondelete="CASCADE"),
           nullable=False),
    Column("kind", String(40), nullable=False),  # effect-model | distilled | front | tuner
    Column("blob", LargeBinary, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

assignments = Table(
    "assignments",
    metadata,
    Column("experiment", String(64), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    Column("unit", String(200), primary_key=True),
    Column("phase", String(20), nullable=False),
    Column("treatment", Integer, nullable=False),
    Column("propensity", Float, nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("arm", String(50), nullable=True),
    Column("holdout", Boolean, nullable=False),
    Column("features", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("experiment", String(64), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("unit", String(200), nullable=False, index=True),
    Column("epoch", Integer, nullable=False),
    Column("outcome", String(200), nullable=False),
    Column("value", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),  # when it was received
    # when it happened, as the client said; null: when it was received. Added to schema 2
    # in place (EventStore adds the column to older stores at start)
    Column("occurred_at", DateTime(timezone=True), nullable=True),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment", String(64), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # queued | running | succeeded | failed
    Column("owner", String(200), nullable=True),  # host:pid of the server process running it
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

arm_history = Table(
    "arm_history",
    metadata,
    Column("experiment", String(64), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    Column("arm", String(50), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("trial", Integer, nullable=True),
    Column("metrics", JSON, nullable=True),
)
