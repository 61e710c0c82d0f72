"""The ASGI app of `medflip serve`: the page, its static files, and the JSON API the page calls.

    GET  /                      the page (static/index.html; its JS and CSS come from /static, no CDN)
    POST /api/analyze           body: the image file's bytes (PNG / JPEG / DICOM); ?phrase=... optional
                                -> zero-shot bars, top-k similar corpus sentences, grounding of the phrase
                                   (default: the top CheXpert-5 finding)
    POST /api/ground?phrase=..  body: the image file's bytes -> grounding heatmap of the phrase
    GET  /api/info              model, corpus size, upload limit

Scripts: `curl --data-binary @cxr.png 'http://127.0.0.1:8000/api/analyze'`. The file name, when sent in an
`X-Filename` header, is used in messages. Errors answer 4xx with {"error": message}: 400 (no body / no
phrase), 413 (over the upload limit), 422 (not a readable image). The server keeps serving after any of them.
"""

from __future__ import annotations

from importlib import resources
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from medflip.serve.inference import Analyzer, BadUpload

STATIC = resources.files("medflip.serve") / "static"


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes (never buffered past it)."""
    mb = limit / 2**20
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadUpload(
            f"upload of {int(declared) / 2**20:.1f} MB is over the {mb:g} MB limit (--max-upload-mb)", 413
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadUpload(f"upload is over the {mb:g} MB limit (--max-upload-mb)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(analyzer: Analyzer, max_upload_mb: float = 32.0) -> Starlette:
    limit = int(max_upload_mb * 2**20)

    def error(e: BadUpload) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=e.status)

    async def index(request: Request) -> Response:
        return Response((STATIC / "index.html").read_text(), media_type="text/html")

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "model": str(analyzer.model_dir),
                "sha256": analyzer.model_hash[:16],
                "corpus_sentences": len(analyzer.index.sentences),
                "max_upload_mb": max_upload_mb,
            }
        )

    async def analyze(request: Request) -> JSONResponse:
        name = unquote(request.headers.get("x-filename", "upload"))
        try:
            data = await read_limited(request, limit)
            phrase = request.query_params.get("phrase") or None
            return JSONResponse(await run_in_threadpool(analyzer.analyze, data, name, phrase))
        except BadUpload as e:
            return error(e)

    async def ground(request: Request) -> JSONResponse:
        name = unquote(request.headers.get("x-filename", "upload"))
        try:
            data = await read_limited(request, limit)
            phrase = request.query_params.get("phrase", "")
            return JSONResponse(await run_in_threadpool(analyzer.ground, data, phrase, name))
        except BadUpload as e:
            return error(e)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", info),
            Route("/api/analyze", analyze, methods=["POST"]),
            Route("/api/ground", ground, methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        ]
    )
