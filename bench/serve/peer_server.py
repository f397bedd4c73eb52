"""The peer a Python user would deploy: FastAPI + uvicorn serving a zuko MAF's log-density.

The flow has the architecture `bench/serve/compare.py` trains with normflow (MAF, NF_LAYERS
transforms, NF_HIDDEN hidden units per layer, NF_DIM features); its weights are random, which
does not change the cost of a pass. The endpoint takes the same JSON body as `normflow serve`
(`{"rows": [[...], ...]}`) and answers `{"log_prob": [...]}`.

Run: NF_DIM=9 NF_LAYERS=3 NF_HIDDEN=64,64 python -m uvicorn peer_server:app --app-dir bench/serve \
         --port 8081 --log-level warning --no-access-log
(NF_ASYNC=1 computes on the event loop instead of FastAPI's thread pool; NF_TORCH_THREADS=1 sets torch's intra-op threads: the better setting for many small requests.)
"""

import os

import torch
import zuko
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

DIM = int(os.environ.get("NF_DIM", "9"))
LAYERS = int(os.environ.get("NF_LAYERS", "3"))
HIDDEN = tuple(int(h) for h in os.environ.get("NF_HIDDEN", "64,64").split(","))
# Threads torch may use inside one request (default: torch's own choice, one per core).
if os.environ.get("NF_TORCH_THREADS"):
    torch.set_num_threads(int(os.environ["NF_TORCH_THREADS"]))

torch.manual_seed(0)
flow = zuko.flows.MAF(DIM, transforms=LAYERS, hidden_features=HIDDEN)
flow.eval()
app = FastAPI()


class Rows(BaseModel):
    rows: list[list[float]]


@app.get("/healthz")
def healthz():
    return {"ok": True}


def log_prob_of(body: Rows):
    x = torch.tensor(body.rows, dtype=torch.float32)
    if x.ndim != 2 or x.shape[1] != DIM:
        raise HTTPException(status_code=400, detail=f"rows must have {DIM} values")
    with torch.no_grad():
        lp = flow().log_prob(x)
    return {"log_prob": lp.tolist()}


if os.environ.get("NF_ASYNC") == "1":
    # Computed on the event loop: no thread pool, no GIL contention between requests.
    @app.post("/v1/models/{name}/log-prob")
    async def log_prob(name: str, body: Rows):
        return log_prob_of(body)
else:
    # FastAPI's advice for blocking work: a plain function, run on its thread pool.
    @app.post("/v1/models/{name}/log-prob")
    def log_prob(name: str, body: Rows):
        return log_prob_of(body)
