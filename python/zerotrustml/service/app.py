"""The HTTP service: FastAPI routes over a :class:`~zerotrustml.service.rounds.Federation`.

Routes (all under ``/v1``; the seed system's two paths are kept as aliases):

======================================  =====================================================================
``GET /v1/health``                      federation id, open round, admission mode, node count
``GET /v1/model``                       the global model the open round trains from
``POST /v1/nodes``                      register a node's Ed25519 key (signed; admitted unless open)
``GET /v1/nodes``                       registered nodes with their reputation
``GET /v1/nodes/{node_id}/reputation``  a node's reputation, round by round
``POST /v1/submissions``                a signed gradient for the open round (alias ``POST /submit_gradient``)
``GET /v1/rounds/{round}``              a round: its status, deadline and submissions
``GET /v1/rounds/{round}/aggregate``    a closed round's record, or the open round's decision so far
                                        (``"final": false``; alias ``GET /round/{round}/aggregate``)
``POST /v1/rounds/{round}/close``       close the open round now (operator token)
``GET /metrics``                        Prometheus metrics
``WS /v1/events``                       live events: registrations, submissions, rounds opened and closed
======================================  =====================================================================

Every refusal is an RFC 9457 ``application/problem+json`` body: ``type``, ``title``, ``status``, ``detail``, and
the request ``field`` at fault with a stable ``code``. Bodies above the limit (``max_body_bytes``) are refused
with 413 from their ``Content-Length``, or as soon as a streamed body passes it, before they are read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path as FilePath
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Header, HTTPException, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from zerotrustml.service.rounds import Federation, ServiceError

__all__ = ["PROBLEM", "create_app", "max_body_bytes"]

PROBLEM = "application/problem+json"
ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]

HEX32 = r"^[0-9a-fA-F]{32}$"
HEX64 = r"^[0-9a-fA-F]{64}$"
HEX128 = r"^[0-9a-fA-F]{128}$"
NODE_ID = r"^[A-Za-z0-9._:-]{1,128}$"
U63 = 2**63 - 1
RoundPath = Annotated[int, Path(ge=0, le=U63, description="a round number")]
NodePath = Annotated[str, Path(pattern=NODE_ID, description="a node id")]


def max_body_bytes(dims: int) -> int:
    """The largest request body: 32 bytes of JSON per value (a float32 written out takes at most 16), plus
    64 KiB for the other fields and a proof."""
    return 32 * dims + 65536


# -- bodies ----------------------------------------------------------------------------------------------------
class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = None
    code: str


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(pattern=NODE_ID, description="the node's id in the federation")
    public_key: str = Field(pattern=HEX64, description="the node's Ed25519 public key, hex")
    signature: str = Field(pattern=HEX128, description="the node's signature over the registration message, hex")
    admission: str | None = Field(
        default=None, pattern=HEX128, description="the admission key's signature (closed federations), hex"
    )


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    node_id: str = Field(pattern=NODE_ID)
    round: int = Field(ge=0, le=U63)
    model_id: str = Field(min_length=1, max_length=256)
    values: list[float] = Field(
        validation_alias=AliasChoices("values", "gradient"),
        description="the update, one float32 per model parameter (`gradient` is accepted as the seed's name)",
    )
    example_count: int = Field(ge=0, le=U63)
    nonce: str = Field(pattern=HEX32, description="16 random bytes, hex: the request's one-time id")
    signature: str = Field(pattern=HEX128, description="the node's Ed25519 signature over the submit message, hex")
    proof: dict[str, Any] | None = Field(
        default=None, description="the node's signed edge proof (the pipeline needs it)"
    )


class Registered(BaseModel):
    node_id: str
    created: bool


class Accepted(BaseModel):
    node_id: str
    round: int
    payload_hash: str


class Health(BaseModel):
    status: str
    federation: str
    model_id: str
    dims: int
    round: int | None
    finished: bool
    admission: str
    nodes: int
    aggregator: str


class GlobalModel(BaseModel):
    round: int | None
    model_id: str
    dims: int
    values: list[float]


class NodeInfo(BaseModel):
    node_id: str
    public_key: str
    reputation: float | None


class ReputationPoint(BaseModel):
    round: int
    score: float


class ReputationHistory(BaseModel):
    node_id: str
    current: float | None
    history: list[ReputationPoint]


class SubmissionInfo(BaseModel):
    node_id: str
    payload_hash: str
    norm: float
    example_count: int


class RoundInfo(BaseModel):
    round: int
    status: str
    deadline: float | None
    submissions: list[SubmissionInfo]
    missing: list[str]


class AggregateInfo(BaseModel):
    round: int
    final: bool
    rule: str
    kept: list[str]
    flagged: list[str]
    missing: list[str]
    reasons: dict[str, list[str]]
    aggregate: list[float]
    metrics: dict[str, Any]


class RoundSummary(BaseModel):
    """A closed round without its vectors: what the dashboard draws."""

    round: int
    rule: str
    kept: list[str]
    flagged: list[str]
    missing: list[str]
    reasons: dict[str, list[str]]
    reputation: dict[str, float]
    metrics: dict[str, Any]
    evaluation: dict[str, Any] | None = Field(
        default=None,
        description="the run owner's scoring of the round (accuracy against honest-only, TPR/FPR against the "
        "Byzantine draw), from the service's --evaluation file; never read by the decision",
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {PROBLEM: {}}, "description": text}
    for code, text in (
        (400, "malformed request"),
        (401, "bad signature"),
        (403, "not admitted or not registered"),
        (404, "not found"),
        (409, "conflicts with the federation's state (closed round, duplicate, replay)"),
        (413, "body too large"),
        (422, "a field breaks a rule"),
    )
}


# -- the app ---------------------------------------------------------------------------------------------------
def create_app(
    federation: Federation,
    *,
    operator_token: str | None = None,
    manage: bool = True,
    evaluation: FilePath | None = None,
    static: FilePath | None = None,
) -> FastAPI:
    """The service's ASGI app over ``federation``.

    ``operator_token`` guards ``POST /v1/rounds/{round}/close`` (none: the route refuses everyone). With
    ``manage`` the app starts and stops the federation with its own lifespan. ``evaluation`` is a JSON-lines
    file of per-round scores written by whoever runs the federation (``zerotrustml cluster`` writes its
    ``run.jsonl``); ``GET /v1/rounds`` passes it through for the dashboard and nothing else reads it.
    ``static`` is the built dashboard, served at ``/`` (default: the package's, when built).
    """
    fed = federation
    limit = max_body_bytes(fed.spec.dims)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage:
            await fed.start()
        try:
            yield
        finally:
            if manage:
                await fed.stop()

    app = FastAPI(
        title="ZeroTrustML service",
        version="1",
        description="Byzantine-resilient federated learning over HTTP: signed submissions, robust rounds.",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    registry = CollectorRegistry()
    submissions = Counter("zerotrustml_submissions", "submissions by outcome", ["outcome"], registry=registry)
    rounds_closed = Counter(
        "zerotrustml_rounds_closed", "rounds closed, by what closed them", ["reason"], registry=registry
    )
    refused = Counter("zerotrustml_requests_refused", "requests refused, by problem code", ["code"], registry=registry)
    open_round = Gauge("zerotrustml_open_round", "the open round (-1 when finished)", registry=registry)
    node_count = Gauge("zerotrustml_registered_nodes", "registered nodes", registry=registry)
    flagged_last = Gauge(
        "zerotrustml_flagged_last_round", "updates flagged in the last closed round", registry=registry
    )

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "submission":
            submissions.labels("accepted").inc()
        elif event["type"] == "round_closed":
            rounds_closed.labels(event["reason"]).inc()
            flagged_last.set(len(event["flagged"]))
        open_round.set(fed.open.round if fed.open is not None else -1)
        node_count.set(len(fed.keys))

    fed.on_event = on_event

    def problem(request: Request | None, status: int, code: str, detail: str, field: str | None) -> JSONResponse:
        refused.labels(code).inc()
        body = _problem(status, code, detail, None if request is None else request.url.path, field)
        return JSONResponse(body, status_code=status, media_type=PROBLEM)

    @app.exception_handler(ServiceError)
    async def on_service_error(request: Request, e: ServiceError) -> JSONResponse:
        return problem(request, e.status, e.code, e.detail, e.field)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        err = e.errors()[0]
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "path", "query", "header")]
        field = ".".join(loc) or None
        if err.get("type") == "json_invalid":
            return problem(request, 400, "malformed_json", f"the body is not JSON: {err.get('msg')}", None)
        if not loc and err.get("type") in ("model_attributes_type", "dict_type", "model_type"):
            return problem(request, 400, "malformed_json", "the body must be a JSON object", None)
        return problem(request, 422, "invalid", f"{field or 'body'}: {err.get('msg')}", field)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(e.status_code, "http")
        return problem(request, e.status_code, code, str(e.detail), None)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, e: Exception) -> JSONResponse:
        return problem(request, 500, "internal", f"the service failed: {type(e).__name__}", None)

    app.add_middleware(_BodyLimit, limit=limit, on_refuse=lambda: refused.labels("body_too_large").inc())

    @app.get("/v1/health", response_model=Health, tags=["federation"])
    async def health() -> Health:
        return Health(
            status="finished" if fed.finished else "ok",
            federation=fed.federation,
            model_id=fed.spec.model_id,
            dims=fed.spec.dims,
            round=None if fed.open is None else fed.open.round,
            finished=fed.finished,
            admission="open" if fed.config.admission_key is None else "closed",
            nodes=len(fed.keys),
            aggregator=fed.config.aggregator,
        )

    @app.get("/v1/model", response_model=GlobalModel, tags=["federation"])
    async def model() -> GlobalModel:
        return GlobalModel(
            round=None if fed.open is None else fed.open.round,
            model_id=fed.spec.model_id,
            dims=fed.spec.dims,
            values=fed.theta.tolist(),
        )

    @app.post("/v1/nodes", response_model=Registered, status_code=201, tags=["nodes"])
    async def register(body: RegisterRequest, response: Response) -> Registered:
        created = await fed.register(
            body.node_id,
            bytes.fromhex(body.public_key),
            bytes.fromhex(body.signature),
            None if body.admission is None else bytes.fromhex(body.admission),
        )
        if not created:
            response.status_code = 200
        return Registered(node_id=body.node_id, created=created)

    @app.get("/v1/nodes", response_model=list[NodeInfo], tags=["nodes"])
    async def nodes() -> list[NodeInfo]:
        scores = await fed.backend.get_reputations()
        return [NodeInfo(node_id=n, public_key=k.hex(), reputation=scores.get(n)) for n, k in sorted(fed.keys.items())]

    @app.get("/v1/nodes/{node_id}/reputation", response_model=ReputationHistory, tags=["nodes"])
    async def reputation(node_id: NodePath) -> ReputationHistory:
        if node_id not in fed.keys:
            raise ServiceError(404, "unknown_node", f"node {node_id!r} is not registered", "node_id")
        history = []
        last = await fed.backend.last_completed_round()
        for r in range(0 if last is None else last + 1):
            rec = await fed.backend.get_round_record(r)
            scores = ((rec.evidence.get("service") or {}).get("ledger") or {}).get("scores", {}) if rec else {}
            if node_id in scores:
                history.append(ReputationPoint(round=r, score=float(scores[node_id])))
        return ReputationHistory(node_id=node_id, current=await fed.backend.get_reputation(node_id), history=history)

    async def submit(request: Request) -> Accepted:
        # Parsed and validated by pydantic's JSON parser in one pass (about 8x faster than json.loads and then
        # validation, for a payload of thousands of numbers); its errors read as a declared body's would.
        try:
            body = SubmitRequest.model_validate_json(await request.body())
        except ValidationError as e:
            raise RequestValidationError(e.errors()) from None
        values = np.asarray(body.values, dtype=np.float64)
        if values.size and not np.all(np.isfinite(values)):
            raise ServiceError(
                422, "non_finite", "values: every value must be finite (NaN and infinities are refused)", "values"
            )
        with np.errstate(over="ignore"):
            payload = values.astype(np.float32)
        if values.size and not np.all(np.isfinite(payload)):
            raise ServiceError(422, "non_finite", "values: a value overflows float32", "values")
        stored = await fed.submit(
            node_id=body.node_id,
            round=body.round,
            model_id=body.model_id,
            values=payload,
            example_count=body.example_count,
            nonce=bytes.fromhex(body.nonce),
            signature=bytes.fromhex(body.signature),
            proof=body.proof,
        )
        return Accepted(node_id=body.node_id, round=body.round, payload_hash=stored.hex())

    submit_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SubmitRequest.model_json_schema()}},
        }
    }
    app.post("/v1/submissions", response_model=Accepted, status_code=202, tags=["rounds"], openapi_extra=submit_body)(
        submit
    )
    app.post(
        "/submit_gradient",
        response_model=Accepted,
        status_code=202,
        tags=["seed aliases"],
        openapi_extra=submit_body,
        summary="Alias of POST /v1/submissions (the seed system's path)",
    )(submit)

    @app.get("/v1/rounds/{round}", response_model=RoundInfo, tags=["rounds"])
    async def get_round(round: RoundPath) -> RoundInfo:
        subs = await fed.backend.get_round(round)
        if fed.open is not None and round == fed.open.round:
            status, deadline = "open", fed.open.deadline
        elif fed.open is not None and round > fed.open.round:
            status, deadline = "future", None
        else:
            status, deadline = ("closed" if await fed.backend.get_round_record(round) is not None else "none"), None
        if status == "none" or (status == "future" and fed.config.rounds is not None and round >= fed.config.rounds):
            raise ServiceError(404, "no_round", f"round {round} is not part of this run", "round")
        return RoundInfo(
            round=round,
            status=status,
            deadline=deadline,
            submissions=[
                SubmissionInfo(
                    node_id=s.node_id, payload_hash=s.hash_hex, norm=float(s.norm), example_count=int(s.example_count)
                )
                for s in subs
            ],
            missing=sorted(set(fed.keys) - {s.node_id for s in subs}),
        )

    async def aggregate(round: RoundPath) -> AggregateInfo:
        rec = await fed.backend.get_round_record(round)
        if rec is not None:
            return AggregateInfo(
                round=round,
                final=True,
                rule=rec.rule,
                kept=list(rec.contributors),
                flagged=list(rec.flagged),
                missing=list(rec.evidence.get("missing", [])),
                reasons=dict(rec.evidence.get("reasons", {})),
                aggregate=np.asarray(rec.aggregate, np.float32).tolist(),
                metrics=_finite(dict(rec.metrics)),
            )
        if fed.open is None or round != fed.open.round:
            raise ServiceError(404, "no_aggregate", f"round {round} is neither closed nor open", "round")
        stored = await fed.backend.get_round(round)
        d = await asyncio.to_thread(fed.decide, round, stored)
        return AggregateInfo(
            round=round,
            final=False,
            rule=fed.config.aggregator,
            kept=d.kept,
            flagged=sorted(d.flagged),
            missing=sorted(set(fed.keys) - {s.node_id for s in stored}),
            reasons=dict(d.evidence.get("reasons", {})),
            aggregate=d.aggregate.tolist(),
            metrics={"submissions": len(stored)},
        )

    app.get("/v1/rounds/{round}/aggregate", response_model=AggregateInfo, tags=["rounds"])(aggregate)
    app.get(
        "/round/{round}/aggregate",
        response_model=AggregateInfo,
        tags=["seed aliases"],
        summary="Alias of GET /v1/rounds/{round}/aggregate (the seed system's path)",
    )(aggregate)

    def scores() -> dict[int, dict[str, Any]]:
        if evaluation is None or not evaluation.exists():
            return {}
        out: dict[int, dict[str, Any]] = {}
        for line in evaluation.read_text().splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):  # a line being written is read next time
                row = json.loads(line)
                out[int(row["round"])] = row
        return out

    @app.get("/v1/rounds", response_model=list[RoundSummary], tags=["rounds"])
    async def rounds(since: Annotated[int, Query(ge=0, le=U63)] = 0) -> list[RoundSummary]:
        """Every closed round from ``since`` on, without vectors (at most 1,000 per call)."""
        last = await fed.backend.last_completed_round()
        scored = scores()
        out = []
        for r in range(since, min(since + 1000, 0 if last is None else last + 1)):
            rec = await fed.backend.get_round_record(r)
            if rec is None:
                continue
            ledger = (rec.evidence.get("service") or {}).get("ledger") or {}
            reputation = ledger.get("scores") or rec.evidence.get("reputation") or {}
            out.append(
                RoundSummary(
                    round=r,
                    rule=rec.rule,
                    kept=list(rec.contributors),
                    flagged=list(rec.flagged),
                    missing=list(rec.evidence.get("missing", [])),
                    reasons=dict(rec.evidence.get("reasons", {})),
                    reputation={k: float(v) for k, v in reputation.items()},
                    metrics=_finite({k: v for k, v in rec.metrics.items() if k != "verdicts"}),
                    evaluation=None if r not in scored else _finite(scored[r]),
                )
            )
        return out

    @app.post("/v1/rounds/{round}/close", response_model=AggregateInfo, tags=["rounds"])
    async def close(round: RoundPath, authorization: Annotated[str | None, Header()] = None) -> AggregateInfo:
        given = (authorization or "").removeprefix("Bearer ").encode()
        if operator_token is None or not hmac.compare_digest(given, operator_token.encode()):
            raise ServiceError(
                401, "not_operator", "closing a round takes the operator's bearer token", "authorization"
            )
        await fed.close(round, reason="operator")
        return await aggregate(round)

    @app.get(
        "/metrics",
        tags=["federation"],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics() -> Response:
        open_round.set(fed.open.round if fed.open is not None else -1)
        node_count.set(len(fed.keys))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/v1/events")
    async def events(ws: WebSocket) -> None:
        await ws.accept()
        q = fed.subscribe()
        try:
            await ws.send_json(
                {"type": "hello", "federation": fed.federation, "round": None if fed.open is None else fed.open.round}
            )
            while True:
                await ws.send_text(json.dumps(_finite(await q.get())))
        except WebSocketDisconnect:
            pass
        finally:
            fed.unsubscribe(q)

    where = static if static is not None else FilePath(__file__).with_name("static")
    if (where / "index.html").exists():
        app.mount("/", StaticFiles(directory=where, html=True), name="dashboard")
    else:

        @app.get("/", include_in_schema=False)
        async def no_dashboard() -> Response:
            raise ServiceError(404, "no_dashboard", "the dashboard is not built: run `make dashboard`", None)

    return app


_TITLES = {
    400: "Malformed request",
    401: "Signature does not verify",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the federation's state",
    413: "Body too large",
    422: "A field breaks a rule",
    500: "Internal error",
}


def _problem(status: int, code: str, detail: str, instance: str | None, field: str | None) -> dict[str, Any]:
    """An RFC 9457 problem body."""
    return {
        "type": f"urn:zerotrustml:problem:{code}",
        "title": _TITLES.get(status, "Request refused"),
        "status": status,
        "detail": detail,
        "instance": instance,
        "field": field,
        "code": code,
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class _BodyLimit:
    """Refuse bodies above ``limit`` bytes with 413 before they are read whole (pure ASGI)."""

    def __init__(self, app: ASGIApp, limit: int, on_refuse: Callable[[], None]) -> None:
        self.app, self.limit, self.on_refuse = app, limit, on_refuse

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send, scope)
            return
        seen = 0

        async def counting() -> Any:
            # Raised inside the route's body read: the app's HTTP exception handler answers it (413 problem).
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        await self.app(scope, counting, send)

    async def _refuse(self, send: Callable[[Any], Awaitable[None]], scope: MutableMapping[str, Any]) -> None:
        self.on_refuse()
        detail = f"the body is larger than this service takes ({self.limit} bytes)"
        body = json.dumps(_problem(413, "body_too_large", detail, scope.get("path"), None)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from the body stream; FastAPI re-raises HTTP exceptions from body parsing, so it reaches the
    app's handler as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than this service takes ({limit} bytes)")
