"""The FastAPI application of ``kerasface-serve``.

Images come as multipart form files (``image``; ``image1`` and ``image2`` for /verify; one or
more ``image`` for /enroll, with a ``name`` field) or as JSON with base64 strings under the same
keys (``images``: a list, for /enroll). Errors are JSON ``{"error": "..."}`` with a 4xx status
naming the problem: 400 unreadable input, 404 unknown person, 413 an upload over the size limit,
422 no face. OpenAPI docs at ``/docs``.
"""

import base64
import binascii
import contextlib
import json

from kerasface.errors import BadInputError
from kerasface.faces.imread import decode_photo
from kerasface.serve.service import NoFaceError, Service, UnknownPersonError

MAX_UPLOAD_MB = 20
EXTRA_HINT = "the HTTP service needs its extra: pip install 'kerasface[serve]'"


def _image_body(*fields: str, many: str | None = None, text: str | None = None) -> dict:
    """OpenAPI request bodies for endpoints that read their own multipart or JSON body."""
    binary = {"type": "string", "format": "binary"}
    b64 = {"type": "string", "format": "byte", "description": "base64 of the encoded image"}
    files = {f: binary for f in fields}
    coded = {f: b64 for f in fields}
    if many:
        files[many] = {"type": "array", "items": binary}
        coded[many + "s"] = {"type": "array", "items": b64}
    if text:
        files[text] = coded[text] = {"type": "string"}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": files}},
        "application/json": {"schema": {"type": "object", "properties": coded}}}}}


class TooLarge(Exception):
    pass


class UploadLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is read whole."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def _refuse(self, send, length) -> None:
        body = json.dumps({"error": f"upload of {length} bytes is over the limit of "
                                    f"{self.limit // 2 ** 20} MB"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send, int(length))
        received, started = 0, False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise TooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except TooLarge:
            if not started:
                await self._refuse(send, f"more than {received}")


def _decode(value, name: str):
    if isinstance(value, str):
        try:
            data = base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value, validate=True)
        except (binascii.Error, ValueError):
            raise BadInputError(f"{name}: not valid base64") from None
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise BadInputError(f"{name}: expected an image file or a base64 string")
    return decode_photo(data, name)


async def read_fields(request) -> dict:
    """The request's fields: {name: [values]}; files as bytes, JSON strings as they are."""
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data") or kind.startswith("application/x-www-form-urlencoded"):
        try:
            form = await request.form()
        except Exception as error:
            raise BadInputError(f"request: not a readable form ({error})") from None
        fields = {}
        for key, value in form.multi_items():
            fields.setdefault(key, []).append(await value.read() if hasattr(value, "read") else value)
        return fields
    body = await request.body()
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        raise BadInputError("request: neither a multipart form nor JSON") from None
    if not isinstance(data, dict):
        raise BadInputError("request: send a multipart form or a JSON object")
    return {k: (list(v) if isinstance(v, list) else [v]) for k, v in data.items()}


def _one_image(fields: dict, key: str):
    values = fields.get(key)
    if not values:
        raise BadInputError(f"{key}: missing (send it as a form file or base64 JSON)")
    if len(values) > 1:
        raise BadInputError(f"{key}: {len(values)} given, expected one")
    return _decode(values[0], key)


def create_app(service: Service, max_upload_mb: float = MAX_UPLOAD_MB):
    """The FastAPI app serving ``service``."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from starlette.exceptions import HTTPException
    except ImportError:
        raise BadInputError(EXTRA_HINT) from None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        yield
        await service.stop()

    app = FastAPI(title="kerasface", summary="Face embedding, verification and identification", lifespan=lifespan)

    def error(status: int, message: str):
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(BadInputError)
    async def bad_input(request, exc: BadInputError):
        status = 422 if isinstance(exc, NoFaceError) else 404 if isinstance(exc, UnknownPersonError) else 400
        return error(status, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        return error(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    @app.exception_handler(Exception)
    async def failure(request, exc: Exception):
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health() -> dict:
        """The model, the gallery (people, index), the similarity threshold and where it came from."""
        return service.health()

    @app.post("/embed", openapi_extra=_image_body("image"))
    async def embed(request: Request) -> dict:
        """Every face of ``image``: box, landmarks, confidence and its L2-normalised embedding."""
        return {"faces": await service.embed(_one_image(await read_fields(request), "image"))}

    @app.post("/verify", openapi_extra=_image_body("image1", "image2"))
    async def verify(request: Request) -> dict:
        """The cosine similarity of the largest faces of ``image1`` and ``image2``, and whether it
        reaches the threshold (same person)."""
        fields = await read_fields(request)
        return await service.verify(_one_image(fields, "image1"), _one_image(fields, "image2"))

    @app.post("/identify", openapi_extra=_image_body("image"))
    async def identify(request: Request) -> dict:
        """Every face of ``image`` with the closest enrolled person, the similarity, and the name
        or ``unknown`` below the threshold."""
        return {"faces": await service.identify(_one_image(await read_fields(request), "image"))}

    @app.post("/enroll", openapi_extra=_image_body(many="image", text="name"))
    async def enroll(request: Request) -> dict:
        """Enroll ``name`` from the largest face of each image (replacing an earlier enrolment of
        that name); answered once the gallery file is written."""
        fields = await read_fields(request)
        names = fields.get("name") or [None]
        values = fields.get("image", []) + fields.get("images", [])
        labels = [f"image {k + 1}" for k in range(len(values))]
        return await service.enroll(names[0], [(label, _decode(v, label)) for label, v in zip(labels, values)])

    @app.get("/people/{name}")
    async def person(name: str) -> dict:
        """An enrolled person: the number of photos and their labels (404 when not enrolled)."""
        return await service.person(name)

    @app.delete("/people/{name}")
    async def remove(name: str) -> dict:
        """Remove ``name`` from the gallery (404 when not enrolled)."""
        return await service.remove(name)

    app.add_middleware(UploadLimit, limit=int(max_upload_mb * 2 ** 20))
    return app
