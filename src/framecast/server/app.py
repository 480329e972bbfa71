"""The HTTP API, shaped as OpenAI's Videos API so the official `openai` client works against it,
and the web studio at /.

Routes only check requests and read or write the store; generation happens in the worker
processes. Every error, ours or the framework's, leaves in OpenAI's shape:
{"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import fcntl
import hmac
import logging
import os
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from .inputs import job_inputs, remove_inputs, save_inputs, sweep
from .params import (
    ApiError,
    JobSpec,
    Upload,
    bad,
    create_spec,
    edit_spec,
    extension_spec,
    remix_spec,
    source_id,
)
from .pool import WorkerPool
from .settings import ModelInfo, ServerSettings, model_info, owner_of
from .store import Job, Store
from .worker import output_paths, remove_outputs

log = logging.getLogger("framecast.server")
STUDIO = Path(__file__).parent / "studio"
MEDIA_TYPES = {"video": "video/mp4", "thumbnail": "image/webp", "spritesheet": "image/jpeg"}
MAX_LIST = 100


class Service:
    """What one server holds: its model's description, its data folder (locked: one server per
    folder), the store, and the worker pool. Opening it takes back jobs a dead server left."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.info: ModelInfo = model_info(settings.model_dir, settings.area_factor)  # a bad folder fails here
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.videos_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_data_dir(settings.data_dir)
        self.store = Store(settings.db_path, settings.max_attempts)
        taken_back = self.store.requeue()  # no worker of ours runs yet: every in_progress job was cut off
        if taken_back:
            log.warning("%d job(s) interrupted by the last shutdown were put back in the queue (or failed "
                        "after %d tries)", taken_back, settings.max_attempts)
        sweep(settings.inputs_dir, lambda id: self.store.get(id) is not None)  # inputs of jobs never added
        self.pool = WorkerPool(settings)

    def start(self) -> None:
        self.pool.start()

    def close(self) -> None:
        self.pool.stop()
        self.store.close()
        self._lock.close()


def _lock_data_dir(data_dir: Path):
    f = open(data_dir / "server.lock", "a+")  # noqa: SIM115 - held open: the lock lasts as long as the file
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel however this process ends
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise ValueError(f"the data folder {data_dir} is in use by another framecast server (pid {pid})") from None
    f.truncate(0)
    f.write(str(os.getpid()))
    f.flush()
    return f


def video_object(job: Job) -> dict[str, Any]:
    """A job as OpenAI's Video object."""
    error = {"code": job.error_code, "message": job.error_message} if job.status == "failed" else None
    return {"id": job.id, "object": "video", "created_at": job.created_at, "completed_at": job.completed_at,
            "expires_at": None, "error": error, "model": job.model, "progress": job.progress, "prompt": job.prompt,
            "remixed_from_video_id": job.remixed_from, "seconds": job.seconds, "size": job.size,
            "status": job.status,
            # framecast's own, ignored by OpenAI's clients: `framecast verify` of the finished mp4
            "provenance": job.provenance}


def _error(status: int, message: str, type: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    return JSONResponse(ApiError(status, message, code=code, type=type).body(), status_code=status)


async def read_fields(request: Request, max_upload: int) -> dict[str, Any]:
    """A JSON or form body as a dict; form keys like input_reference[image_url] become nested
    dicts (that is how the openai client sends objects in a form), file parts become Uploads."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            raise bad("the request body is not valid JSON", code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad("the request body must be a JSON object", code="invalid_json")
        return body
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        fields: dict[str, Any] = {}
        # a data URL in input_reference[image_url] is a form field, not a file: let it be as large as an upload
        async with request.form(max_part_size=max_upload * 4 // 3 + 1024) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read(max_upload + 1)
                    value = Upload(value.filename or "", value.content_type or "", data[:max_upload],
                                   len(data) > max_upload)
                outer, _, inner = key.partition("[")
                if inner.endswith("]"):
                    fields.setdefault(outer, {})[inner[:-1]] = value
                else:
                    fields[key] = value
        return fields
    if not await request.body():
        return {}
    raise bad(f"send multipart/form-data or application/json, not {ctype or 'an untyped body'}",
              code="unsupported_content_type")


def create_app(service: Service) -> FastAPI:
    settings, store, info = service.settings, service.store, service.info

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="framecast", summary="OpenAI's Videos API, served by a framecast model",
                  lifespan=lifespan, docs_url="/docs", redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        message = f"Invalid URL ({request.method} {request.url.path})" if e.status_code == 404 else str(e.detail)
        return _error(e.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:])
        return JSONResponse(bad(f"{where}: {first.get('msg', 'invalid')}", where or None).body(), status_code=400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, e: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "the server had an error while processing your request", "server_error")

    async def owner(request: Request) -> str:  # async: no thread hop on every request
        """The caller's owner id. With API keys, a request needs one of them as a bearer token."""
        if not settings.api_keys:
            return ""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        for key in settings.api_keys:
            if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode()):
                return owner_of(key)
        raise ApiError(401, "Incorrect API key provided. Send one of this server's keys as 'Authorization: Bearer KEY'.",
                       code="invalid_api_key")

    def find(video_id: str, who: str, param: str = "video_id") -> Job:
        job = store.get(video_id, who)
        if job is None:  # another key's video is as good as missing
            raise ApiError(404, f"Video with id '{video_id}' not found.", param, "not_found")
        return job

    def completed(video_id: str, who: str, done_to_it: str, param: str = "video_id") -> Job:
        """A video that a remix, extension or edit starts from."""
        job = find(video_id, who, param)
        if job.status != "completed":
            raise bad(f"video {video_id} is {job.status}; only a completed video can be {done_to_it}", param,
                      "video_not_ready")
        return job

    def source_video(fields: dict[str, Any], who: str, done_to_it: str) -> tuple[Job, Path]:
        """The completed video an extension or edit names, and its mp4."""
        job = completed(source_id(fields), who, done_to_it, "video")
        mp4 = output_paths(settings.videos_dir, job.id)["video"]
        if not mp4.is_file():
            raise ApiError(404, f"the video file of {job.id} is missing from the server's data folder", "video",
                           "not_found")
        return job, mp4

    def add(spec: JobSpec, who: str, remixed_from: str | None = None) -> Job:
        """Queue a job, its inputs stored first: once it is added, it runs whatever happens to this process."""
        if service.pool.broken:  # accepting a job that cannot run would leave its client polling forever
            raise ApiError(503, f"this server cannot generate: {service.pool.broken}", code="model_unavailable",
                           type="server_error")
        video_id = f"video_{secrets.token_hex(16)}"
        if spec.files:
            save_inputs(job_inputs(settings.inputs_dir, video_id), spec.files)
        try:
            return store.add(id=video_id, owner=who, prompt=spec.prompt, model=spec.model, seconds=spec.seconds,
                             size=spec.size, options=spec.options, remixed_from=remixed_from, given=spec.given)
        except BaseException:
            remove_inputs(settings.inputs_dir, video_id)
            raise

    # --- OpenAI's Videos API -------------------------------------------------------------------
    @app.post("/v1/videos")
    async def create_video(request: Request, who: str = Depends(owner)):
        spec = create_spec(await read_fields(request, settings.max_upload_bytes), info, settings)
        return video_object(add(spec, who))

    @app.get("/v1/videos")
    async def list_videos(after: str | None = None, limit: int = 20, order: str = "desc", who: str = Depends(owner)):
        if not 1 <= limit <= MAX_LIST:
            raise bad(f"limit must be between 1 and {MAX_LIST}, got {limit}", "limit")
        if order not in ("asc", "desc"):
            raise bad(f"order must be 'asc' or 'desc', got {order!r}", "order")
        cursor = None
        if after:
            cursor = store.get(after, who)
            if cursor is None:
                raise bad(f"after: no video with id '{after}'", "after")
        jobs, more = store.list(who, cursor, limit, order)
        data = [video_object(j) for j in jobs]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": more}

    @app.get("/v1/videos/{video_id}")
    async def retrieve_video(video_id: str, who: str = Depends(owner)):
        job = find(video_id, who)
        headers = {}
        if job.status in ("queued", "in_progress"):  # the openai client's poll helper reads this
            headers["openai-poll-after-ms"] = str(settings.poll_after_ms)
        return JSONResponse(video_object(job), headers=headers)

    @app.delete("/v1/videos/{video_id}")
    async def delete_video(video_id: str, who: str = Depends(owner)):
        job = store.delete(video_id, who)
        if job is None:
            find(video_id, who)  # raises the 404
        remove_outputs(settings.videos_dir, video_id)  # a worker still on it drops its files at its next step
        remove_inputs(settings.inputs_dir, video_id)  # a worker holds what it read of them
        return {"id": video_id, "object": "video.deleted", "deleted": True}

    @app.get("/v1/videos/{video_id}/content")
    async def video_content(video_id: str, variant: str = "video", who: str = Depends(owner)):
        if variant not in MEDIA_TYPES:
            raise bad(f"variant must be one of {', '.join(MEDIA_TYPES)}, got {variant!r}", "variant")
        job = find(video_id, who)
        if job.status != "completed":
            why = f": {job.error_message}" if job.status == "failed" else ""
            raise bad(f"video {video_id} is {job.status}{why}; its content exists once it is completed",
                      "video_id", "video_not_ready")
        path = output_paths(settings.videos_dir, video_id)[variant]
        if not path.is_file():
            raise ApiError(404, f"the {variant} of video {video_id} is missing from the server's data folder",
                           "video_id", "not_found")
        return FileResponse(path, media_type=MEDIA_TYPES[variant], filename=f"{video_id}{path.suffix}")

    @app.post("/v1/videos/{video_id}/remix")
    async def remix_video(video_id: str, request: Request, who: str = Depends(owner)):
        fields = await read_fields(request, settings.max_upload_bytes)
        source = completed(video_id, who, "remixed")
        return video_object(add(remix_spec(fields, source, info, settings), who, remixed_from=source.id))

    @app.post("/v1/videos/extensions")
    async def extend_video(request: Request, who: str = Depends(owner)):
        fields = await read_fields(request, settings.max_upload_bytes)
        source, mp4 = source_video(fields, who, "extended")
        return video_object(add(extension_spec(fields, source, mp4, info, settings), who, remixed_from=source.id))

    @app.post("/v1/videos/edits")
    async def edit_video(request: Request, who: str = Depends(owner)):
        fields = await read_fields(request, settings.max_upload_bytes)
        source, mp4 = source_video(fields, who, "edited")
        return video_object(add(edit_spec(fields, source, mp4, info, settings), who, remixed_from=source.id))

    @app.get("/v1/models")
    async def list_models(who: str = Depends(owner)):
        return {"object": "list", "data": [{"id": info.name, "object": "model", "created": 0, "owned_by": "framecast"}]}

    # --- the service's own ---------------------------------------------------------------------
    @app.get("/healthz")
    async def health():
        broken = service.pool.broken
        body = {"status": "broken" if broken else "ok", "model": info.name, "pool": service.pool.status(),
                "jobs": store.counts()}
        return JSONResponse(body, status_code=503 if broken else 200)

    @app.get("/info")
    async def describe():
        """What the studio needs to fill its form."""
        mw, mh = info.multiple
        return {"model": info.name, "size": info.size, "fps": info.fps, "multiple": [mw, mh],
                "max_pixels": info.max_pixels, "max_seconds": settings.max_seconds,
                "max_video_seconds": settings.max_video_seconds,
                "auth": bool(settings.api_keys), "image_to_video": info.given_frames}

    @app.get("/", include_in_schema=False)
    async def studio():
        return FileResponse(STUDIO / "index.html", media_type="text/html")

    app.mount("/studio", StaticFiles(directory=STUDIO), name="studio")
    return app


def serve(settings: ServerSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the service until interrupted (what `framecast serve` does)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    service = Service(settings)  # a bad model folder or a busy data folder fails before listening
    log.info("framecast: %s from %s, data in %s, %d worker(s); studio at http://%s:%d/", service.info.name,
             settings.model_dir, settings.data_dir, settings.workers, host, port)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info")
