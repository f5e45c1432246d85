"""``pexkit.Client``: the Python SDK of the decision service (HTTP, via httpx).

Examples
--------
>>> import pexkit as px
>>> client = px.Client("http://127.0.0.1:8000", api_key="...")  # doctest: +SKIP
>>> client.create_experiment(spec)                                # doctest: +SKIP
>>> d = client.decide("email-campaign", "u1", {"recency": 3, ...})  # doctest: +SKIP
>>> client.log("email-campaign", "u1", "visit", 1.0, event_id="u1-visit")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from pexkit.exceptions import InvalidParameterError, PexkitError
from pexkit.sequential.serving import SequentialDecision
from pexkit.serving.decision import Decision
from pexkit.spec.spec import ExperimentSpec

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["Client", "Decision", "SequentialDecision", "ServiceError"]


class ServiceError(PexkitError):
    """The service refused a request; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _event(event: Mapping[str, Any]) -> dict[str, Any]:
    """An event's JSON body: a datetime ``time`` as ISO-8601 text, no ``time`` when None."""
    out = dict(event)
    at = out.pop("time", None)
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise InvalidParameterError(
                f"time {at!r}: give a timezone-aware datetime (e.g. tzinfo=UTC)."
            )
        at = at.isoformat()
    if at is not None:
        out["time"] = at
    return out


def _spec_dict(spec: Any) -> dict[str, Any]:
    if isinstance(spec, ExperimentSpec):
        return spec.to_dict()
    if isinstance(spec, Mapping):
        return dict(spec)
    return ExperimentSpec.from_yaml(spec).to_dict()


class Client:
    """HTTP client for ``pexkit serve``.

    Parameters
    ----------
    base_url : str
        E.g. ``http://127.0.0.1:8000``.
    api_key : str
        A key with the scopes the calls need (admin, decide, log, read).
    timeout : float
        Seconds per request.
    """

    def __init__(self, base_url: str, api_key: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        resp = self._http.request(method, path, json=json)
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:  # e.g. a proxy's or the HTTP server's own plain-text answer
                body = None
            detail = body.get("detail", resp.text) if isinstance(body, dict) else resp.text
            raise ServiceError(resp.status_code, str(detail))
        if resp.status_code == 204:
            return None
        return resp.json()

    # --------------------------------------------------------- experiments
    def create_experiment(
        self, spec: Any, tracking: Iterable[Mapping[str, str]] = (), holdout: float = 0.03,
        salt: str | None = None,
    ) -> dict[str, Any]:
        """Create an experiment from an ExperimentSpec, its dict form, or a YAML path.

        ``tracking`` lists outcomes that are logged and tuned online but not
        modeled (``{"name", "goal"}``); ``salt`` fixes the assignment hash.
        """
        body = {"spec": _spec_dict(spec), "tracking": [dict(t) for t in tracking],
                "holdout": holdout, "salt": salt}
        return dict(self._call("POST", "/v1/experiments", body))

    def experiment(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/experiments/{name}"))

    def experiments(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/experiments"))

    def policies(self, name: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/experiments/{name}/policies"))

    def front(self, name: str) -> dict[str, Any]:
        """The offline Pareto front (policies.json schema)."""
        return dict(self._call("GET", f"/v1/experiments/{name}/front"))

    def create_key(
        self, scopes: Iterable[str], label: str = "", experiments: Iterable[str] | None = None
    ) -> str:
        """Create a key (shown once); ``experiments`` limits it to those experiments."""
        body = {"scopes": list(scopes), "label": label,
                "experiments": None if experiments is None else list(experiments)}
        return str(self._call("POST", "/v1/keys", body)["key"])

    def keys(self) -> list[dict[str, Any]]:
        """Every key's id, scopes, experiments, label and revocation time."""
        return list(self._call("GET", "/v1/keys"))

    def revoke_key(self, key_id: int) -> None:
        """Revoke a key by id (see :meth:`keys`)."""
        self._call("DELETE", f"/v1/keys/{key_id}")

    def delete_experiment(self, name: str) -> None:
        """Delete an experiment and everything logged for it."""
        self._call("DELETE", f"/v1/experiments/{name}")

    # --------------------------------------------------------- decide / log
    def decide(self, experiment: str, unit: str, features: Mapping[str, Any]) -> Decision:
        """Ask for one unit's treatment."""
        d = self._call("POST", f"/v1/experiments/{experiment}/decide",
                       {"unit": unit, "features": dict(features)})
        return Decision(**d)

    def decide_batch(
        self, experiment: str, requests: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> list[Decision]:
        """Decide for many ``(unit, features)`` pairs in one call."""
        body = {"requests": [{"unit": u, "features": dict(f)} for u, f in requests]}
        out = self._call("POST", f"/v1/experiments/{experiment}/decide/batch", body)
        return [Decision(**d) for d in out["decisions"]]

    def log(
        self, experiment: str, unit: str, outcome: str, value: float, event_id: str,
        time: datetime | str | None = None,
    ) -> dict[str, int]:
        """Log one outcome event; retries with the same ``event_id`` are ignored.

        ``time``: when it happened (a timezone-aware datetime or ISO-8601 text);
        default: when the service receives it.
        """
        body = _event({"unit": unit, "outcome": outcome, "value": value, "event_id": event_id,
                       "time": time})
        return dict(self._call("POST", f"/v1/experiments/{experiment}/log", body))

    def log_batch(self, experiment: str, events: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Log many events (each ``{unit, outcome, value, event_id}``, optionally ``time``)
        in one transaction."""
        body = {"events": [_event(e) for e in events]}
        return dict(self._call("POST", f"/v1/experiments/{experiment}/log/batch", body))

    # --------------------------------------------------------- jobs and phases
    def submit_job(self, experiment: str, kind: str, **params: Any) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/experiments/{experiment}/jobs",
                               {"kind": kind, "params": params}))

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/jobs/{job_id}"))

    def run_job(
        self, experiment: str, kind: str, timeout: float = 900.0, **params: Any
    ) -> dict[str, Any]:
        """Submit a job and wait for it; raises ServiceError when it fails."""
        job = self.submit_job(experiment, kind, **params)
        deadline = time.monotonic() + timeout
        while job["status"] not in ("succeeded", "failed"):
            if time.monotonic() > deadline:
                raise ServiceError(504, f"job {job['id']} ({kind}) still {job['status']} "
                                        f"after {timeout} s")
            time.sleep(0.2)
            job = self.job(int(job["id"]))
        if job["status"] == "failed":
            raise ServiceError(500, f"job {job['id']} ({kind}) failed: {job['error']}")
        return dict(job["result"])

    def tune(self, experiment: str, objectives: Iterable[str] | None = None) -> dict[str, Any]:
        body = {"objectives": list(objectives) if objectives is not None else None}
        return dict(self._call("POST", f"/v1/experiments/{experiment}/tune", body))

    def arms(self, experiment: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/v1/experiments/{experiment}/arms"))

    def tuning(self, experiment: str) -> dict[str, Any]:
        """The tuning so far: arms with CIs, the best arm per objective, Ax's recommendation."""
        return dict(self._call("GET", f"/v1/experiments/{experiment}/tuning"))

    def launch(
        self, experiment: str, version: int, holdout: float | None = None, explore: float = 0.0
    ) -> dict[str, Any]:
        """Launch a version; ``explore`` (epsilon) randomizes that share of served units."""
        return dict(self._call("POST", f"/v1/experiments/{experiment}/launch",
                               {"version": version, "holdout": holdout, "explore": explore}))

    def backtest(self, experiment: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/experiments/{experiment}/backtest"))

    def health(self, experiment: str, **settings: float) -> dict[str, Any]:
        """Live monitoring with flags; ``window_minutes``, ``grace_minutes``, ``stale_minutes``."""
        query = "&".join(f"{k}={float(v)}" for k, v in settings.items())
        path = f"/v1/experiments/{experiment}/health" + (f"?{query}" if query else "")
        return dict(self._call("GET", path))

    def set_phase(self, experiment: str, phase: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/experiments/{experiment}/phase", {"phase": phase}))

    # --------------------------------------------------------- sequential experiments
    def create_sequential(
        self, name: str, spec: Any, epsilon: float = 0.05, time: str = "step",
        salt: str | None = None,
    ) -> dict[str, Any]:
        """Create a sequential experiment from a SequentialSpec, its dict form, or a YAML path.

        It serves the uniform random policy until an agent is launched;
        ``epsilon`` is the default exploration of launched agents; ``time`` is
        ``"step"`` (numbers) or ``"timestamp"`` (timezone-aware ISO-8601).
        """
        from pexkit.sequential.spec import SequentialSpec

        if isinstance(spec, SequentialSpec):
            raw = spec.to_dict()
        elif isinstance(spec, Mapping):
            raw = dict(spec)
        else:
            raw = SequentialSpec.from_yaml(spec).to_dict()
        body = {"name": name, "spec": raw, "epsilon": epsilon, "time": time, "salt": salt}
        return dict(self._call("POST", "/v1/sequential", body))

    def sequential(self, name: str) -> dict[str, Any]:
        """A sequential experiment: spec, versions (the live one), counts."""
        return dict(self._call("GET", f"/v1/sequential/{name}"))

    def launch_sequential(
        self, name: str, agent: Any, epsilon: float | None = None
    ) -> dict[str, Any]:
        """Serve a fitted OfflineAgent (or its to_dict() form) as the next version."""
        import orjson

        raw = agent.to_dict() if hasattr(agent, "to_dict") else dict(agent)
        raw = orjson.loads(orjson.dumps(raw))  # plain JSON: a NaN (e.g. a loss) becomes null
        return dict(self._call("POST", f"/v1/sequential/{name}/launch",
                               {"agent": raw, "epsilon": epsilon}))

    @staticmethod
    def _sequential_decision(d: Mapping[str, Any]) -> SequentialDecision:
        return SequentialDecision(
            action=d["action"], action_index=int(d["action_index"]),
            propensity=float(d["propensity"]), version=int(d["version"]),
            explored=bool(d["explored"]), unit=d["unit"], time=d["time"],
        )

    def decide_sequential(
        self, name: str, unit: str | int, time: Any, state: Mapping[str, Any]
    ) -> SequentialDecision:
        """Decide for one unit at ``time`` (a step, or an aware datetime / ISO-8601 text)."""
        body = {"unit": unit, "time": _time_json(time), "state": dict(state)}
        return self._sequential_decision(
            self._call("POST", f"/v1/sequential/{name}/decide", body))

    def decide_sequential_batch(
        self, name: str, requests: Iterable[tuple[str | int, Any, Mapping[str, Any]]]
    ) -> list[SequentialDecision]:
        """Decide for many ``(unit, time, state)`` in one call."""
        body = {"requests": [{"unit": u, "time": _time_json(t), "state": dict(s)}
                             for u, t, s in requests]}
        out = self._call("POST", f"/v1/sequential/{name}/decide/batch", body)
        return [self._sequential_decision(d) for d in out["decisions"]]

    def log_sequential(
        self, name: str, unit: str | int, time: Any, reward: str | None = None,
        value: float | None = None, event_id: str | int | None = None, done: bool = False,
    ) -> dict[str, int]:
        """Log a reward of the decision at (unit, time); ``done=True`` marks it terminal."""
        body = {"unit": unit, "time": _time_json(time), "reward": reward, "value": value,
                "event_id": event_id, "done": done}
        return dict(self._call("POST", f"/v1/sequential/{name}/log", body))

    def log_sequential_batch(
        self, name: str, events: Iterable[Mapping[str, Any]]
    ) -> dict[str, int]:
        """Log many events (each ``{unit, time, reward, value}``, optionally ``event_id``,
        ``done``) in one transaction."""
        body = {"events": [{**e, "time": _time_json(e.get("time"))} for e in events]}
        return dict(self._call("POST", f"/v1/sequential/{name}/log/batch", body))

    def sequential_log(self, name: str) -> pd.DataFrame:
        """The decision log as a DataFrame for ``TransitionLog.from_frame(frame, spec)``.

        One row per decision with the spec's columns: unit, time, action,
        propensity, the state columns, each reward (summed; 0 when none) and
        done; ``frame.attrs["spec"]`` holds the experiment's spec (a dict).
        Timestamps come back as UTC datetimes.
        """
        import pandas as pd

        doc = self._call("GET", f"/v1/sequential/{name}/log")
        frame = pd.DataFrame(doc["rows"], columns=doc["columns"])
        spec = doc["spec"]
        for col in spec.get("state", {}).get("numeric") or []:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
        if doc["time"] == "timestamp":
            frame[spec["time"]] = pd.to_datetime(frame[spec["time"]], utc=True)
        frame.attrs["spec"] = spec
        return frame


def _time_json(time: Any) -> Any:
    """A decision time as JSON: an aware datetime as ISO-8601 text, numbers as they are."""
    if isinstance(time, datetime):
        if time.tzinfo is None:
            raise InvalidParameterError(
                f"time {time!r}: give a timezone-aware datetime (e.g. tzinfo=UTC)."
            )
        return time.isoformat()
    if hasattr(time, "item") and not isinstance(time, str):  # numpy scalars
        return time.item()
    return time
