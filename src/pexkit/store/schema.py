"""The event store's tables (SQLAlchemy Core; SQLite and PostgreSQL)."""

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
    UniqueConstraint,
)

metadata = MetaData()

experiments = Table(
    "experiments",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("spec", JSON, nullable=False),
    Column("tracking", JSON, nullable=False),  # [{name, goal}] logged, not modeled
    Column("phase", String(20), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("epoch", Integer, nullable=False),  # bumps on every phase change / tune round
    Column("holdout", Float, nullable=False),
    Column("launched_version", Integer, nullable=True),
    Column("arms", JSON, nullable=False),  # current tune arms: [{"arm", "version"}]
    Column("state", JSON, nullable=False),  # model ids, front, tuning bookkeeping
    Column("duplicates", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(100), nullable=False),
    Column("label", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("experiment", String(200), ForeignKey("experiments.name"), primary_key=True),
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
    Column("experiment", String(200), ForeignKey("experiments.name"), nullable=False),
    Column("blob", LargeBinary, nullable=False),
    Column("summary", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

assignments = Table(
    "assignments",
    metadata,
    Column("experiment", String(200), primary_key=True),
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
    Column("experiment", String(200), primary_key=True),
    Column("event_id", String(200), primary_key=True),
    Column("unit", String(200), nullable=False, index=True),
    Column("epoch", Integer, nullable=False),
    Column("outcome", String(200), nullable=False),
    Column("value", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("params", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # queued | running | succeeded | failed
    Column("owner", String(200), nullable=True),  # host:pid of the server process running it
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
)

arm_history = Table(
    "arm_history",
    metadata,
    Column("experiment", String(200), primary_key=True),
    Column("epoch", Integer, primary_key=True),
    Column("arm", String(50), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("trial", Integer, nullable=True),
    Column("metrics", JSON, nullable=True),
    UniqueConstraint("experiment", "epoch", "arm"),
)
