"""The ceiling: a bare FastAPI endpoint with the service's request model, nothing else.

Served by the same stack as ``pexkit serve`` (uvicorn, uvloop, httptools), it
parses and validates the same body and answers a decision-shaped JSON without
touching any store: what one worker of this web stack can do at most.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Response

from pexkit.service.schemas import DecideRequest

app = FastAPI()


@app.post("/v1/experiments/{name}/decide")
async def decide(name: str, body: DecideRequest) -> Response:
    out = {"treatment": "control", "policy_version": 1, "propensity": 1 / 3, "holdout": False,
           "unit": str(body.unit), "treatment_index": 0, "arm": None, "phase": "randomize"}
    return Response(orjson.dumps(out), media_type="application/json")
