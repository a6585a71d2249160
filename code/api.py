"""HTTP service: predict.Recommender behind FastAPI, feedback appended to the SQLite event log.

Start (from the repository root, after `make train`):

    uvicorn api:app --app-dir code --http api:JSONErrorsHTTP --host 127.0.0.1 --port 8000   # docs at /docs

(``--http api:JSONErrorsHTTP``: a request the HTTP parser itself rejects, e.g. a bad Content-Length, gets a
JSON 400 too, not uvicorn's plain text.) Several worker processes, each on its own SO_REUSEPORT socket so that new
connections reach all of them: ``python code/serve.py --workers 2 --port 8000``.

Configuration (environment variables, the same as code/app.py's; relative paths are taken from the
repository root):

    NOSTRADE_CHECKPOINT      checkpoint to serve                         (default checkpoints/model.pt)
    NOSTRADE_DATA            processed folder it was trained on          (default data/processed)
    NOSTRADE_CATALOGUE       full catalogue, e.g. data/sample/anime.csv.gz (default: the file recorded in
                             the processed folder's meta.json, if unchanged; else the model's own titles)
    NOSTRADE_EVENTS          SQLite event log (nostrade.events)          (default data/events.db)
    NOSTRADE_MAX_BODY_BYTES  request body cap in bytes                   (default 1048576)
    NOSTRADE_THREADS         CPU threads per worker (PyTorch and BLAS)   (default 1)
    NOSTRADE_MAX_BATCHES     POST /recommend/batch requests a worker runs at once; more get a JSON 429
                             with Retry-After (default 2)
    NOSTRADE_MICROBATCH_MAX  concurrent recommendation requests a worker scores in one model call at most
                             (code/batching.py; 1: each alone)                       (default 32)
    NOSTRADE_MICROBATCH_WAIT_MS  the longest the first of them waits for others, in ms (default 5)

The model is loaded once per worker process at startup. Every score comes from predict.Recommender;
this module only validates, looks up histories, and shapes JSON. Recommendation requests that arrive together
are scored in one model call and each answered with its own row (micro-batching: code/batching.py). A known
user's history is nostrade.history's (training interactions, then logged ratings; the latest rating wins; a
cleared one removes the title), read from the log on every request, so a POST /feedback shows in the next
GET /recommend at once (in any worker).

Errors are JSON ``{"error": kind, "detail": one line, "errors": [...]}`` with a 4xx status: 422 for a
request that does not match the schema (also a query parameter given twice, or digits other than ASCII
0-9), 400 for values predict rejects (e.g. an unknown genre filter), 404 for an unknown user or title,
409 for an ``event_id`` already stored for a different event, 413 for a body over the cap (declared or
streamed). The event log is checked at start-up (SQLite ``quick_check``): when it is damaged, the service
still starts and serves anonymous recommendations, ``/health`` says ``"status": "degraded"`` with the
problem in ``event_log``, and every request that needs the log (feedback, known users) gets a JSON 503
(so does any later SQLite failure: a full disk, a lock held past the timeout). Request values never name
files: every path comes from the environment above, read at startup.
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import orjson
import pandas as pd
from fastapi import Depends, FastAPI, Path as PathParam, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from batching import DEFAULT_MAX_SIZE, DEFAULT_WAIT_MS, BatchSettings, MicroBatcher
from nostrade.dataset import sha256_of
from nostrade.events import MAX_EVENT_ID_LENGTH, EventLog, EventLogGone, IdempotencyConflict, new_event_id
from nostrade.history import UserHistories
from nostrade.sequences import LIKE
from nostrade.sources import MAX_TIMESTAMP
from predict import REPO_ROOT, Recommender, UnknownTitle, feedback_code, use_threads

log = logging.getLogger("nostrade.api")

MAX_ID = 2**53 - 1  # largest integer a JSON client (JavaScript) reads exactly
API_MAX_K = 100  # k and limit of a request (predict.MAX_K, the library's own cap, is higher)
MAX_HISTORY = 1000
MAX_BATCH = 256
MAX_BATCH_HISTORY = MAX_HISTORY  # a known user's latest events a batch scores (a logged history can be long)
DEFAULT_MAX_BATCHES = 2  # batch requests one worker runs at once
MAX_FILTER_VALUES = 50
DEFAULT_MAX_BODY_BYTES = 1 << 20
TITLE_FIELDS = ["item_id", "name", "genres", "type", "episodes", "rating_mean", "members", "in_model"]


@dataclass(frozen=True)
class Settings:
    checkpoint: Path
    data: Path
    catalogue: Path | None
    events: Path
    max_body_bytes: int
    threads: int
    max_batches: int = DEFAULT_MAX_BATCHES
    microbatch: BatchSettings = BatchSettings()

    @classmethod
    def from_env(cls, env=os.environ) -> "Settings":
        def path(name: str, default: str) -> Path:
            value = Path(env.get(name) or default)
            return value if value.is_absolute() else REPO_ROOT / value

        def integer(name: str, default: int) -> int:
            value = env.get(name) or str(default)
            if not value.isdigit():
                raise ValueError(f"{name}={value!r} is not a non-negative integer")
            return int(value)

        def milliseconds(name: str, default: float) -> float:
            value = env.get(name) or str(default)
            if not value.replace(".", "", 1).isdigit():
                raise ValueError(f"{name}={value!r} is not a non-negative number of milliseconds")
            return float(value)

        return cls(checkpoint=path("NOSTRADE_CHECKPOINT", "checkpoints/model.pt"),
                   data=path("NOSTRADE_DATA", "data/processed"),
                   catalogue=path("NOSTRADE_CATALOGUE", "") if env.get("NOSTRADE_CATALOGUE") else None,
                   events=path("NOSTRADE_EVENTS", "data/events.db"),
                   max_body_bytes=integer("NOSTRADE_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
                   threads=max(1, integer("NOSTRADE_THREADS", 1)),
                   max_batches=max(1, integer("NOSTRADE_MAX_BATCHES", DEFAULT_MAX_BATCHES)),
                   microbatch=BatchSettings(max(1, integer("NOSTRADE_MICROBATCH_MAX", DEFAULT_MAX_SIZE)),
                                            milliseconds("NOSTRADE_MICROBATCH_WAIT_MS", DEFAULT_WAIT_MS)))


# ---------------------------------------------------------------------------------------------------
# Request and response schemas
# ---------------------------------------------------------------------------------------------------
def integral(value):
    """JSON Schema's integers are numbers with a zero fraction: accept 5.0 as 5 (5.5, "5" and true stay errors)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def json_int(ge: int, le: int, description: str | None = None):
    """An integer in ge..le, strict or lax as its model is (the bounds go first so they reach the schema)."""
    return Annotated[int, Field(ge=ge, le=le, description=description), BeforeValidator(integral)]


Id = json_int(0, MAX_ID)
K = json_int(1, API_MAX_K, f"number of recommendations, 1..{API_MAX_K}")
Alpha = Annotated[float, Field(ge=0.0, le=1.0, description="genre share of the blended score")]
Timestamp = Annotated[float, Field(ge=0, lt=MAX_TIMESTAMP, allow_inf_nan=False,
                                   description="unix seconds, 1970..2099 (prep's range)")]
FeedbackValue = Literal[1, 2, 3, "Dislike", "Like", "Love"]
FilterValue = Annotated[str, StringConstraints(min_length=1, max_length=64)]
EventId = Annotated[str, StringConstraints(pattern=rf"^[A-Za-z0-9._:-]{{1,{MAX_EVENT_ID_LENGTH}}}$")]
ITEM_ID_NAMES = AliasChoices("item_id", "anime_id")  # anime_id: the name before issue 29, a deprecated alias


class Strict(BaseModel):
    """JSON bodies: unknown fields rejected, no type coercion (an id is a JSON integer, not "5" or true)."""
    model_config = ConfigDict(extra="forbid", strict=True)


class HistoryEvent(Strict):
    item_id: Id = Field(validation_alias=ITEM_ID_NAMES, description="the source's item id (anime_id: deprecated)")
    feedback: FeedbackValue = Field(2, description="1 Dislike, 2 Like, 3 Love (or those names)")
    timestamp: Timestamp | None = Field(None, description="the history is ordered by it when every event has "
                                                          "one, else taken in the order given (oldest first)")


class Options(BaseModel):
    """What every recommendation request may set besides the history (body fields or query parameters)."""
    k: K = 20
    alpha: Alpha | None = Field(None, description="the genre blend's share; default: the one chosen on validation")
    genres: list[FilterValue] | None = Field(None, max_length=MAX_FILTER_VALUES,
                                             description="keep titles with any of these genres")
    types: list[FilterValue] | None = Field(None, max_length=MAX_FILTER_VALUES, description="e.g. TV, Movie")
    min_members: json_int(0, MAX_ID) | None = None
    explain: bool = True


class RecommendRequest(Strict, Options):
    history: list[HistoryEvent] = Field(default_factory=list, max_length=MAX_HISTORY)


class RecommendQuery(Options):
    model_config = ConfigDict(extra="forbid")  # query strings are text: "5" is 5 here


class UserRecommendQuery(RecommendQuery):
    user_id: Id


class ColdQuery(RecommendQuery):
    # The schema itself states every bound (the fuzzer holds us to it): 15 digits stay below MAX_ID, and
    # 2 * MAX_HISTORY - 1 characters hold at most MAX_HISTORY ids.
    liked: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,15}(,[0-9]{1,15})*$",
                                            max_length=2 * MAX_HISTORY - 1)] = Field(
        description=f"comma-separated item ids the person likes, e.g. 1,5114,30 (at most {2 * MAX_HISTORY - 1} "
                    "characters)")


class FeedbackRequest(Strict):
    user_id: Id
    item_id: Id = Field(validation_alias=ITEM_ID_NAMES, description="the source's item id (anime_id: deprecated)")
    feedback: FeedbackValue
    event_id: EventId | None = Field(None, description="idempotency key: a retried event with the same id is "
                                                       "stored once (generated when absent)")
    session_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    timestamp: Timestamp | None = Field(None, description="default: now")


class BatchRequest(Strict):
    user_ids: list[Id] = Field(default_factory=list, max_length=MAX_BATCH,
                               description="known users: training history plus logged feedback")
    histories: list[Annotated[list[HistoryEvent], Field(max_length=MAX_HISTORY)]] = Field(
        default_factory=list, max_length=MAX_BATCH, description="anonymous histories")
    k: K = 20
    alpha: Alpha | None = Field(None, description="the genre blend's share; default: the one chosen on validation")


class Explanation(BaseModel):
    pick_item_id: int
    pick_name: str
    pick_feedback: str
    similarity: float | None = Field(description="embedding cosine; null outside the model")
    genre_similarity: float | None
    shared_genres: list[str]
    co_watched: int
    co_loved: int


class RankedTitle(BaseModel):
    rank: int
    item_id: int
    name: str
    genres: list[str]
    type: str | None
    members: int
    in_model: bool


class RecommendedItem(RankedTitle):
    from_features: bool = Field(description="outside the model's id vocabulary, scored by the model from its side "
                                            "features (a checkpoint trained with --use-item-features)")
    score: float
    model_score: float | None
    genre_score: float
    popularity_score: float
    dislike_penalty: float
    source: Literal["sequence", "genre", "popularity"] = Field(description="the signal that put it here")
    retrieved_by: list[str] = Field(description="a two-stage ranker's candidate generators that found it, in words "
                                                "(nostrade.explain.RETRIEVAL_PHRASES); empty for other models")
    reason: str
    explanations: list[Explanation]


class RecommendResponse(BaseModel):
    path: Literal["sequence+genre", "genre+popularity", "popularity"]
    cold_start: bool
    alpha: float
    unknown_ids: list[int] = Field(description="item ids not in the catalogue: skipped")
    content_only_ids: list[int] = Field(description="titles the model does not know: counted through genres")
    n_duplicates: int
    n_truncated: int
    items: list[RecommendedItem]


class UserRecommendResponse(RecommendResponse):
    user_id: int
    n_training_events: int
    n_logged_events: int


class FeedbackResponse(BaseModel):
    stored: bool = Field(description="false: an event with this event_id was already stored (a retry)")
    event_id: str


class Title(BaseModel):
    item_id: int
    name: str
    genres: list[str]
    type: str | None
    episodes: int | None
    rating_mean: float | None
    members: int | None
    in_model: bool


class SearchHit(Title):
    match: float


class SearchResponse(BaseModel):
    query: str
    items: list[SearchHit]


class SimilarItem(RankedTitle):
    similarity: float
    source: Literal["embedding", "genre"]


class SimilarResponse(BaseModel):
    item_id: int
    items: list[SimilarItem]


class BatchResult(BaseModel):
    user_id: int | None = Field(description="set for the entries of user_ids")
    index: int | None = Field(description="position in histories, for anonymous histories")
    path: str
    unknown_ids: list[int]
    item_ids: list[int] = Field(description="best first")
    scores: list[float]


class BatchResponse(BaseModel):
    k: int
    alpha: float
    results: list[BatchResult]


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: the event log is damaged or its file was deleted "
                                                           "or replaced (see event_log); feedback and known users "
                                                           "get 503")
    event_log: str = Field(description='"ok", "damaged: " and what SQLite\'s integrity check found, or "gone: " '
                                       'when the file was deleted or replaced while the service ran')
    model_version: str = Field(description="sha256 of the checkpoint file")
    source: str
    catalogue_titles: int
    model_titles: int
    training_users: int
    logged_events: int | None = Field(description="null when the event log cannot be read")
    uptime_s: float
    pid: int = Field(description="the worker process that answered")
    scored_requests: int = Field(description="recommendation requests this worker has scored")
    scoring_calls: int = Field(description="the model calls that scored them: concurrent requests share one "
                                           "(micro-batching); scored_requests / scoring_calls is the mean batch")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    error: str
    detail: str
    errors: list[ErrorItem] | None = None


def errors(*codes: int) -> dict:
    return {code: {"model": ErrorBody} for code in codes}


# ---------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------
@dataclass
class Service:
    rec: Recommender
    events: EventLog
    users: UserHistories
    model_version: str
    started: float
    batcher: MicroBatcher  # concurrent recommendation requests, scored together
    event_log_problem: str | None = None  # what quick_check found at start-up, or a later SQLite failure


class EventLogUnavailable(HTTPException):
    def __init__(self, problem: str):
        super().__init__(503, f"the event log cannot be used ({problem}); nothing was stored. Repair or replace it "
                              "and restart the service")


def checked_service(rec: Recommender, events: EventLog, model_version: str, settings: Settings) -> Service:
    """The service, with the event log's integrity checked once (a damaged page otherwise shows only on writes)."""
    problems = events.quick_check()
    if problems:
        log.error("event log %s is damaged: %s", events.path, "; ".join(problems[:5]))
    return Service(rec, events, UserHistories(rec.dataset, events), model_version, time.time(),
                   MicroBatcher(rec.scores, settings.microbatch), f"damaged: {problems[0]}" if problems else None)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"request body is larger than the {limit:,}-byte limit")


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with a JSON 413: at once when Content-Length says so,
    else as soon as the streamed body passes the limit (FastAPI's own ``max_body_size`` answers the first
    case in plain text, hence this small middleware)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            problem = (BodyTooLarge(self.max_bytes) if declared.isdigit()
                       else HTTPException(400, f"Content-Length {declared[:40].decode(errors='replace')!r} "
                                               "is not a byte count"))
            return await error_response(problem.status_code, problem.detail)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)  # FastAPI re-raises HTTPExceptions from body reading
            return message

        await self.app(scope, limited_receive, send)


class AnnounceScoring:
    """Announces each recommendation request to the micro-batcher as it arrives (code/batching.py), so that a
    batch being gathered waits for it while its body is read and validated; the endpoint hands the ticket on."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        service = getattr(self.state, "service", None)
        if scope["type"] != "http" or scope["path"] not in SCORED_PATHS or service is None:
            return await self.app(scope, receive, send)
        with service.batcher.announced() as ticket:
            scope["nostrade.ticket"] = ticket
            await self.app(scope, receive, send)


class JSONErrorsHTTP(HttpToolsProtocol):
    """uvicorn's httptools protocol (what it picks by default), whose own 400 for a request it cannot parse (a bad
    Content-Length, a malformed header line: the app never sees those) is JSON like every other error. Started
    with ``uvicorn --http api:JSONErrorsHTTP``."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": "bad_request", "detail": "invalid HTTP request (e.g. a bad Content-Length or a "
                                                             "malformed header line)"}).encode()
        head = [b"HTTP/1.1 400 Bad Request\r\n", *(name + b": " + value + b"\r\n"
                                                  for name, value in self.server_state.default_headers),
                b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


ERROR_KINDS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "conflict",
               413: "body_too_large", 422: "validation_error", 429: "too_many_requests", 500: "internal_error",
               503: "event_log_unavailable"}
MULTI_VALUED_PARAMS = {"genres", "types"}
SCORED_PATHS = {"/recommend", "/recommend_cold"}  # the paths whose requests are micro-batched


def error_response(status: int, detail: str, items: list | None = None, headers: dict | None = None) -> JSONResponse:
    body = {"error": ERROR_KINDS.get(status, "http_error"), "detail": detail}
    if items is not None:
        body["errors"] = items
    return JSONResponse(body, status_code=status, headers=headers)


def validation_items(exc: RequestValidationError) -> list[dict]:
    return [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError):
        items = validation_items(exc)
        shown = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in items[:3])
        more = f" (and {len(items) - 3} more)" if len(items) > 3 else ""
        return error_response(422, f"invalid request: {shown}{more}", items=items)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException):
        headers = exc.headers
        if exc.status_code == 405:  # Starlette lists only the first route's methods for a path served by several
            allowed = {m for r in request.app.routes if isinstance(r, APIRoute) and r.path_regex.match(request.url.path)
                       for m in r.methods}
            headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed))}
        return error_response(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(ValueError)  # predict's one-line messages about values it does not accept
    async def on_value_error(request: Request, exc: ValueError):
        return error_response(400, str(exc))

    @app.exception_handler(IdempotencyConflict)
    async def on_conflict(request: Request, exc: IdempotencyConflict):
        return error_response(409, str(exc))

    @app.exception_handler(sqlite3.Error)  # a damaged log, a full disk, a lock held past the timeout
    async def on_event_log_error(request: Request, exc: sqlite3.Error):
        log.error("event log failure in %s %s: %s", request.method, request.url.path, exc)
        service = request.app.state.service
        if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc):
            service.event_log_problem = f"damaged: {exc}"
        if isinstance(exc, EventLogGone):  # every later write would be lost too
            service.event_log_problem = f"gone: {exc}"
        problem = EventLogUnavailable(str(exc))
        return error_response(problem.status_code, problem.detail)

    @app.exception_handler(UnknownTitle)
    async def on_unknown_title(request: Request, exc: UnknownTitle):
        return error_response(404, str(exc))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception):
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error_response(500, "internal error; see the server log")


def load_service(settings: Settings) -> Service:
    rec = Recommender.load(settings.checkpoint, settings.data, catalogue_path=settings.catalogue)
    return checked_service(rec, EventLog(settings.events), sha256_of(settings.checkpoint), settings)


async def single_valued_query(request: Request) -> None:
    """A query parameter given more than once is a 422 (frameworks silently keep one), except the list filters.
    ``async``: FastAPI runs a plain function dependency in its thread pool, a thread hop for every request."""
    names = [name for name, _ in request.query_params.multi_items()]
    repeated = sorted({n for n in names if names.count(n) > 1} - MULTI_VALUED_PARAMS)
    if repeated:
        raise RequestValidationError([{"loc": ("query", name), "msg": f"given {names.count(name)} times; give it "
                                       "once", "type": "repeated_parameter"} for name in repeated])


def usable_log(service: Service) -> EventLog:
    """The event log, or a 503 when the start-up check (or an earlier failure) found it damaged."""
    if service.event_log_problem is not None:
        raise EventLogUnavailable(service.event_log_problem)
    return service.events


STARTUP_REFUSALS = (FileNotFoundError, ValueError, OSError, RuntimeError, sqlite3.Error)  # not a bug: bad input


class OneLineStartupErrors:
    """A start-up refusal (a missing or damaged checkpoint, a file that is not an event log, a bad setting) goes
    to the server as its one line ``error: ...`` rather than Starlette's traceback, which uvicorn would print."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def one_line(message):
            refusal = getattr(self.state, "refusal", None)
            if message["type"] == "lifespan.startup.failed" and refusal is not None:
                message = {**message, "message": f"error: {refusal}"}
            await send(message)

        await self.app(scope, receive, one_line)


def create_app(recommender: Recommender | None = None, events_path: str | Path | None = None,
               model_version: str | None = None, settings: Settings | None = None) -> FastAPI:
    """The service. With no arguments everything comes from the environment (see the module docstring)
    and the model is loaded at startup; tests pass a ready ``recommender`` (and ``events_path``), which
    serve at once. A bad setting in the environment is refused at start-up, in one line."""
    refusal = None
    if settings is None:
        try:
            settings = Settings.from_env()
        except ValueError as err:
            settings, refusal = Settings.from_env({}), err
    if recommender is not None:
        service = checked_service(recommender, EventLog(events_path or settings.events), model_version or "in-memory",
                                  settings)
    else:
        service = None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.service is None:
            try:
                if refusal is not None:
                    raise refusal
                use_threads(settings.threads)
                app.state.service = load_service(settings)
            except STARTUP_REFUSALS as err:
                app.state.refusal = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise
            log.info("serving %s (sha256 %s)", settings.checkpoint, app.state.service.model_version[:12])
        yield

    app = FastAPI(title="Nostrade Engine", version="1.0",
                  description="Anime recommendations from the trained model (EASE, or SASRec with feedback and time), "
                              "genre blend and explanations. Every error is JSON with a 4xx status.",
                  lifespan=lifespan, dependencies=[Depends(single_valued_query)])
    app.state.service = service
    app.state.max_batches = settings.max_batches
    app.state.batch_slots = threading.BoundedSemaphore(settings.max_batches)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(OneLineStartupErrors, state=app.state)
    app.add_middleware(AnnounceScoring, state=app.state)
    install_error_handlers(app)
    add_routes(app)
    return app


def get_service(request: Request) -> Service:
    return request.app.state.service


def add_routes(app: FastAPI) -> None:
    # The scoring and lookup endpoints are `async def` on purpose: their few milliseconds of CPU run on the
    # event loop itself, one request at a time per worker. Run in the thread pool, a worker's concurrent
    # requests fight over the GIL through many small torch and NumPy calls (benchmarks/load.py measured about
    # twice the server CPU per request that way, with the serving code of the time). Throughput scales with
    # --workers, and concurrent recommendation requests share one model call (code/batching.py). The batch and
    # feedback endpoints (long scoring, SQLite commits) stay in the thread pool.
    add_health_route(app)
    add_recommend_routes(app)
    add_batch_route(app)
    add_feedback_and_title_routes(app)


def add_health_route(app: FastAPI) -> None:
    @app.get("/health", response_model=Health, tags=["service"])
    async def health(request: Request):
        s = get_service(request)
        try:
            s.events.check_identity()
            logged = s.events.count() if s.event_log_problem is None else None
        except EventLogGone as err:
            s.event_log_problem, logged = f"gone: {err}", None
        except sqlite3.DatabaseError as err:
            s.event_log_problem, logged = f"damaged: {err}", None
        return Health(status="ok" if s.event_log_problem is None else "degraded",
                      event_log=s.event_log_problem or "ok", model_version=s.model_version,
                      source=str(s.rec.meta.get("source", "")), catalogue_titles=len(s.rec.catalogue),
                      model_titles=s.rec.dataset.n_items, training_users=s.users.n_training_users,
                      logged_events=logged, uptime_s=round(time.time() - s.started, 3), pid=os.getpid(),
                      scored_requests=s.batcher.counts.requests, scoring_calls=s.batcher.counts.calls)


def add_recommend_routes(app: FastAPI) -> None:
    @app.post("/recommend", response_model=RecommendResponse, responses=errors(400, 413, 422),
              tags=["recommend"])
    async def recommend(body: RecommendRequest, request: Request):
        """Top-k for a history of (item_id, feedback, timestamp) events; unknown ids are listed, not fatal."""
        events = [(e.item_id, e.feedback, e.timestamp) for e in body.history]
        return await recommend_json(request, events, body)

    @app.get("/recommend", response_model=UserRecommendResponse, responses=errors(400, 404, 422, 503),
             tags=["recommend"])
    async def recommend_user(query: Annotated[UserRecommendQuery, Query()], request: Request):
        """Top-k for a known user: their training history followed by their logged feedback."""
        s = get_service(request)
        usable_log(s)
        events, n_trained, n_logged = s.users.of(query.user_id)
        if not events:
            raise HTTPException(404, f"user_id {query.user_id}: unknown (no training history, no logged feedback)")
        return await recommend_json(request, events, query, user_id=query.user_id, n_training_events=n_trained,
                                    n_logged_events=n_logged)

    @app.get("/recommend_cold", response_model=RecommendResponse, responses=errors(400, 422), tags=["recommend"])
    async def recommend_cold(query: Annotated[ColdQuery, Query()], request: Request):
        """Cold start from a few liked titles (titles the model knows: the model; others: genre + popularity)."""
        liked = [int(x) for x in query.liked.split(",")]
        return await recommend_json(request, [(a, LIKE, None) for a in liked], query)


def add_batch_route(app: FastAPI) -> None:
    @app.post("/recommend/batch", response_model=BatchResponse, responses=errors(400, 404, 413, 422, 429, 503),
              tags=["recommend"])
    def recommend_batch(body: BatchRequest, request: Request):
        """Top-k for many users at once (known users and/or anonymous histories), without explanations. A known
        user's latest MAX_BATCH_HISTORY events count; a user listed twice is read and scored once."""
        slots = request.app.state.batch_slots
        if not slots.acquire(blocking=False):
            running = request.app.state.max_batches
            raise HTTPException(429, f"{running} batch request{' is' if running == 1 else 's are'} already running in "
                                     "this worker; retry shortly", headers={"Retry-After": "1"})
        try:
            service = get_service(request)
            results = batch_results(service, body)
            alpha = service.rec.default_alpha if body.alpha is None else body.alpha
            return JSONResponse({"k": body.k, "alpha": alpha, "results": results})
        finally:
            slots.release()


def add_feedback_and_title_routes(app: FastAPI) -> None:
    @app.post("/feedback", status_code=201, response_model=FeedbackResponse,
              responses={200: {"model": FeedbackResponse, "description": "already stored (a retried event_id)"},
                         **errors(400, 404, 409, 413, 422, 503)}, tags=["feedback"])
    def feedback(body: FeedbackRequest, request: Request):
        """Append one rating to the event log (durably, before answering); idempotent by event_id."""
        s = get_service(request)
        if s.rec.rows_of(np.array([body.item_id]))[0] < 0:
            raise HTTPException(404, f"item_id {body.item_id}: not in the catalogue")
        code = feedback_code(body.feedback)
        event_id = body.event_id or new_event_id()
        stored = usable_log(s).append(body.user_id, body.item_id, code, session_id=body.session_id, event_id=event_id,
                                 timestamp=body.timestamp)
        return JSONResponse({"stored": stored, "event_id": event_id}, status_code=201 if stored else 200)

    @app.get("/similar/{item_id}", response_model=SimilarResponse, responses=errors(404, 422), tags=["titles"])
    async def similar(item_id: Annotated[int, PathParam(ge=0, le=MAX_ID)], request: Request,
                      k: Annotated[int, Query(ge=1, le=API_MAX_K)] = 10):
        """Titles closest to one title: in the model's embedding space, or by genres outside the model."""
        table = get_service(request).rec.similar(item_id, k=k)
        return Response(f'{{"item_id":{item_id},"items":{table.to_json(orient="records")}}}',
                        media_type="application/json")

    @app.get("/items", response_model=SearchResponse, responses=errors(422), tags=["titles"])
    async def items(request: Request, q: Annotated[str, Query(min_length=1, max_length=200, description="title")],
                    limit: Annotated[int, Query(ge=1, le=API_MAX_K)] = 10):
        """Typo-tolerant title search over the whole catalogue."""
        table = get_service(request).rec.search(q, limit=limit)[[*TITLE_FIELDS, "match"]]
        return Response(f'{{"query":{json.dumps(q)},"items":{table.to_json(orient="records")}}}',
                        media_type="application/json")


def batch_results(s: Service, body: BatchRequest) -> list[dict]:
    """One result per entry of ``user_ids`` (in order, repeats included), then one per anonymous history."""
    users = list(dict.fromkeys(body.user_ids))  # distinct, first-seen order
    if users:
        usable_log(s)
    histories = [s.users.of(u)[0][-MAX_BATCH_HISTORY:] for u in users]
    strangers = [u for u, h in zip(users, histories) if not h]
    if strangers:
        raise HTTPException(404, f"user_ids {strangers[:10]}: unknown (no training history, no logged feedback)")
    histories += [[(e.item_id, e.feedback, e.timestamp) for e in h] for h in body.histories]
    ranked = s.rec.recommend_batch(histories, k=body.k, alpha=body.alpha)
    starts = np.searchsorted(ranked["user"].to_numpy(), np.arange(len(histories) + 1))
    item_ids, scores, paths = (ranked[c].tolist() for c in ("item_id", "score", "path"))
    scored = []
    for n, history in enumerate(histories):
        ids = np.fromiter((e[0] for e in history), dtype=np.int64, count=len(history))
        a, b = starts[n], starts[n + 1]
        scored.append({"path": paths[a] if b > a else "popularity", "unknown_ids": ids[s.rec.rows_of(ids) < 0].tolist(),
                       "item_ids": item_ids[a:b], "scores": scores[a:b]})
    row_of_user = {u: n for n, u in enumerate(users)}
    return ([{"user_id": u, "index": None, **scored[row_of_user[u]]} for u in body.user_ids]
            + [{"user_id": None, "index": i, **scored[len(users) + i]} for i in range(len(body.histories))])


async def recommend_json(request: Request, events: Sequence, query: Options, **extra) -> Response:
    """The answer to one recommendation request, its history scored with the requests that came in meanwhile."""
    s = get_service(request)
    history = s.rec.history(events)
    alpha = s.rec.default_alpha if query.alpha is None else query.alpha
    filters = dict(genres=query.genres, types=query.types, min_members=query.min_members)
    s.rec.filter_mask(**filters)  # a bad filter value is refused (400) before its history is scored
    scored = await s.batcher.scores(history, alpha, request.scope.get("nostrade.ticket"))
    out = s.rec.recommend(history, k=query.k, alpha=alpha, explain=query.explain, scored=scored, **filters)
    # orjson: the same JSON (plain values, NaN already None); json.dumps was a tenth of the server's time under load
    return Response(orjson.dumps({**out.to_dict(), **extra}), media_type="application/json")


app = create_app()
