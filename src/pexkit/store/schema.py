"""The event store's tables (SQLAlchemy Core; SQLite and PostgreSQL).

Schema version 2. An experiment's mutable state is one typed JSON document
(:class:`pexkit.service.state.ExperimentState`) guarded by an integer
``version``: every change is a compare-and-swap on that version, so two jobs or
two server processes never overwrite each other's changes. Models, fronts and
tuner states are immutable blobs referenced by id; they are model text plus a
JSON manifest (or plain JSON), never pickles.

Sequential experiments (``/v1/sequential``: one decision per unit and time,
served by an offline RL agent) have tables of their own, added to schema 2 in
place (``create_all`` adds missing tables at start; older pexkit versions
ignore them): ``sequential_experiments``, ``sequential_agents`` (versions: 1 is
the uniform random policy, later ones launched agents as JSON),
``sequential_decisions`` (one per experiment, unit and time) and
``sequential_rewards`` (reward events; ``event_id`` unique per experiment).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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

sequential_experiments = Table(
    "sequential_experiments",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("spec", JSON, nullable=False),  # SequentialSpec.to_dict()
    Column("salt", String(64), nullable=False),
    Column("epsilon", Float, nullable=False),  # the default exploration of a launch
    Column("time_kind", String(20), nullable=False),  # step | timestamp
    Column("live_version", Integer, nullable=False),  # 1: uniform random
    Column("created_at", DateTime(timezone=True), nullable=False),
)

sequential_agents = Table(
    "sequential_agents",
    metadata,
    Column("experiment", String(64),
           ForeignKey("sequential_experiments.name", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),  # uniform | agent
    Column("agent", JSON, nullable=True),  # OfflineAgent.to_dict(); null for uniform
    Column("epsilon", Float, nullable=False),  # what it is served with
    Column("summary", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

sequential_decisions = Table(
    "sequential_decisions",
    metadata,
    Column("experiment", String(64), primary_key=True),
    Column("unit", String(200), primary_key=True),
    Column("time", String(64), primary_key=True),  # canonical text of the step or UTC time
    Column("time_value", Float, nullable=False),  # the step, or seconds since 1970
    Column("action", Integer, nullable=False),
    Column("propensity", Float, nullable=False),
    Column("version", Integer, nullable=False),
    Column("explored", Boolean, nullable=False),
    Column("state", JSON, nullable=False),
    Column("done", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

sequential_rewards = Table(
    "sequential_rewards",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment", String(64), nullable=False),
    Column("unit", String(200), nullable=False),
    Column("time", String(64), nullable=False),
    Column("reward", String(200), nullable=True),  # null: an event that only marks done
    Column("value", Float, nullable=True),
    Column("event_id", String(200), nullable=True),  # null: not deduplicated
    Column("done", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("experiment", "event_id", name="uq_sequential_rewards_event"),
    Index("ix_sequential_rewards_decision", "experiment", "unit", "time"),
)
