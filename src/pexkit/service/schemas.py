"""Request and response models of the HTTP API (the OpenAPI schema is built from them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ArmOut", "BacktestOut", "CreateExperiment", "DecideBatch", "DecideRequest", "DecisionOut",
    "DecisionsOut", "ErrorOut", "ExperimentHealthOut", "ExperimentOut", "FlagOut", "HealthOut",
    "JobOut", "JobRequest", "KeyCreated", "KeyOut", "KeyRequest", "LaunchRequest", "LogBatch",
    "LogEvent", "LogResult", "PhaseRequest", "PolicyOut", "TrackedOutcome", "TuneRequest",
    "TunedArmOut",
]

Id = str | int


class ErrorOut(BaseModel):
    """Every error: one sentence that says what was wrong and how to fix it."""

    detail: str


class TrackedOutcome(BaseModel):
    name: str = Field(max_length=200)
    goal: Literal["maximize", "minimize"] = "maximize"


class CreateExperiment(BaseModel):
    spec: dict[str, Any] = Field(description="The experiment spec in its YAML form (DESIGN.md); "
                                 "spec.name: 1-64 of A-Z a-z 0-9 _ . - .")
    tracking: list[TrackedOutcome] = Field(
        default_factory=list, max_length=50,
        description="Outcomes logged and tuned online but not modeled (e.g. a long-term one).",
    )
    holdout: float = Field(0.03, description="Launch holdout fraction, 0.02-0.05.")
    salt: str | None = Field(None, description="Assignment hash salt (8-64 printable ASCII "
                             "characters); random when absent.")


class DecideRequest(BaseModel):
    unit: Id = Field(description="Unit id: a string of 1-200 characters or an integer < 2**63.")
    features: dict[str, Any] = Field(description="Every spec feature of the unit (null when "
                                     "unknown).")


class DecideBatch(BaseModel):
    requests: list[DecideRequest] = Field(min_length=1,
                                          description="At most PEXKIT_MAX_BATCH (10,000).")


class DecisionOut(BaseModel):
    treatment: str
    policy_version: int
    propensity: float
    holdout: bool
    unit: str
    treatment_index: int
    arm: str | None
    phase: str


class DecisionsOut(BaseModel):
    decisions: list[DecisionOut]


class LogEvent(BaseModel):
    unit: Id
    outcome: str
    value: float | int | bool
    event_id: Id = Field(description="Client-chosen id; a retried event reuses it.")
    time: str | None = Field(
        None, max_length=64, json_schema_extra={"format": "date-time"},
        description="When the event happened: a timezone-aware ISO-8601 timestamp "
        "('2026-03-01T12:00:00Z'); default: when it is received. The outcome's window counts "
        "from the unit's first exposure; events before it do not count.",
    )


class LogBatch(BaseModel):
    events: list[LogEvent] = Field(min_length=1,
                                   description="At most PEXKIT_MAX_BATCH (10,000).")


class LogResult(BaseModel):
    accepted: int
    duplicates: int


class JobRequest(BaseModel):
    kind: Literal["train", "optimize", "tune_round", "retrain", "distill", "refit"]
    params: dict[str, Any] = Field(default_factory=dict)


class JobOut(BaseModel):
    id: int
    experiment: str
    kind: str
    params: dict[str, Any]
    status: Literal["queued", "running", "succeeded", "failed"]
    owner: str | None
    result: dict[str, Any] | None
    error: str | None
    created_at: str | None
    heartbeat_at: str | None
    finished_at: str | None


class TuneRequest(BaseModel):
    objectives: list[str] | None = Field(
        None, description="Outcomes to tune (default: every spec and tracked outcome)."
    )


class LaunchRequest(BaseModel):
    version: int = Field(ge=1, le=2**31 - 1, description="Policy version (GET .../policies).")
    holdout: float | None = Field(None, description="0.02-0.05; default: the experiment's.")
    explore: float = Field(0.0, description="Epsilon, 0-0.5: the share of served units that get "
                           "a uniformly random treatment (logged with its propensity, used by "
                           "retraining and off-policy evaluation).")


class PhaseRequest(BaseModel):
    phase: Literal["randomize", "stopped"]


class KeyRequest(BaseModel):
    scopes: list[Literal["admin", "decide", "log", "read"]] = Field(min_length=1)
    label: str = Field("", max_length=200)
    experiments: list[str] | None = Field(
        None, max_length=1000,
        description="Limit the key to these experiments (default: every experiment).",
    )


class KeyCreated(BaseModel):
    id: int
    key: str = Field(description="Shown once; only its hash is stored.")
    scopes: list[str]
    experiments: list[str] | None


class KeyOut(BaseModel):
    id: int
    scopes: list[str]
    experiments: list[str] | None
    label: str
    created_at: str | None
    revoked_at: str | None


class ArmOut(BaseModel):
    arm: str
    version: int


class ExperimentOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    phase: Literal["randomize", "tune", "launched", "stopped"]
    epoch: int
    version: int = Field(description="State version: bumps on every change of the state.")
    spec: dict[str, Any]
    tracking: list[TrackedOutcome]
    holdout: float
    explore: float
    launched_version: int | None
    arms: list[ArmOut]
    assignments: dict[str, int]
    events: int
    duplicates: int
    model_id: int | None
    ate: list[dict[str, Any]] | None
    candidates: list[int]
    tune_round: int
    tuning_space: dict[str, Any] | None = Field(
        description="The box online tuning searches (weight angles in [0, 1], bounded biases)."
    )
    created_at: str | None


class PolicyOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    experiment: str
    version: int
    kind: Literal["uniform", "linear", "tree"]
    params: dict[str, Any]
    model_id: int | None
    label: str
    created_at: str | None


class TunedArmOut(BaseModel):
    epoch: int
    arm: str
    version: int
    trial: int | None
    metrics: dict[str, Any] | None
    round: int | None = Field(None, description="The tuning round (1, 2, ...) of the arm.")
    arm_number: int | None = Field(None, description="The arm's number within its round.")


class TuningOut(BaseModel):
    objectives: dict[str, str | None] = Field(description="Tuned objective -> its goal.")
    arms: list[dict[str, Any]] = Field(description=(
        "Every tuned arm: round, arm, version, units, completed, the policy in words, and "
        "per objective its mean, sem and 95% CI."))
    best: dict[str, Any] = Field(description=(
        "Per objective, the completed arm with the best mean (by the goal), with its CI."))
    recommendation: list[dict[str, Any]] = Field(description=(
        "Ax's recommended arms among completed trials (one objective: the best; several: "
        "its Pareto frontier), with the model's predicted mean and sem per objective."))


class BacktestOut(BaseModel):
    version: int | None
    holdout: float
    explore: float
    predicted: dict[str, Any] | None = Field(
        default=None,
        description="The offline DR prediction of the lift vs the holdout, per outcome and in "
                    "utility, on the launched version's training log.")
    outcomes: list[dict[str, Any]]
    over_time: list[dict[str, Any]]


class FlagOut(BaseModel):
    name: str = Field(description="assignment_ratio, holdout_share, feature_drift, "
                      "missing_outcomes, outcomes_stopped or failed_jobs.")
    status: Literal["ok", "warn", "alert"]
    reason: str = Field(description="What was measured, in plain words.")
    fix: str = Field(description="What to do about it.")


class ExperimentHealthOut(BaseModel):
    """Live monitoring of the experiment's current phase (epoch)."""

    name: str
    phase: str
    epoch: int
    at: str = Field(description="When it was computed (UTC).")
    status: Literal["ok", "warn", "alert"] = Field(description="The worst flag's status.")
    settings: dict[str, Any]
    traffic: dict[str, Any] = Field(
        description="decisions and events: total, last_window, per_minute_window, "
                    "per_minute_since_start (since the phase's first decision), first_at, "
                    "last_at.")
    assignment: dict[str, Any] = Field(
        description="tests: chi-square tests of the randomized decisions against their "
                    "shares; holdout: the launched holdout share test (null before a launch).")
    drift: dict[str, Any] = Field(
        description="PSI per feature of the latest live decisions against the training log "
                    "of the model in use (model_id), with bin shares.")
    outcomes: dict[str, Any] = Field(
        description="Units past the grace period without any outcome event, and whether "
                    "events stopped arriving.")
    jobs: dict[str, Any]
    flags: list[FlagOut]


class HealthOut(BaseModel):
    status: Literal["ok"]
