"""GraphiQL served by the API itself: the page on ``GET /graphql``, its files under /graphiql/.

Strawberry's page loads React, GraphiQL and the explorer plugin from a public CDN, so on a
machine without internet it stays a blank "Loading...". Here the same files (the npm packages'
own builds, vendored in ``graphiql/vendor/`` by schema/http/graphiql_vendor.py, which records their
versions and hashes) come from this server. Each file's URL carries the start of its SHA-256,
so a browser keeps it for a year and a new version is simply a new URL; the page itself is
revalidated every time. Its Content-Security-Policy allows nothing from another origin.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import string
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

FILES = Path(__file__).parents[1] / "graphiql"  # schema/graphiql: package data
VENDOR = FILES / "vendor"

# In the order the page loads them: React before GraphiQL, GraphiQL before the plugin, and the
# page's own script last. (folder, file name); names are unique, they appear in URLs.
STYLES = (
    ("vendor/graphiql-3.8.3", "graphiql.min.css"),
    ("vendor/graphiql-plugin-explorer-1.0.2", "style.css"),
    (".", "lookalike-graphiql.css"),
)
SCRIPTS = (
    ("vendor/react-18.2.0", "react.production.min.js"),
    ("vendor/react-dom-18.2.0", "react-dom.production.min.js"),
    ("vendor/graphiql-3.8.3", "graphiql.min.js"),
    ("vendor/graphiql-plugin-explorer-1.0.2", "index.umd.js"),
    (".", "lookalike-graphiql.js"),
)
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

# Everything the page needs comes from this origin. GraphiQL's stylesheet embeds its fonts
# and the page its icon as data: URLs; no inline script, no eval.
PAGE_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    name: str
    body: bytes

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.body).hexdigest()[:16]

    @property
    def url(self) -> str:
        """Relative to /graphql, so the page also works behind a proxy's path prefix."""
        return f"graphiql/{self.digest}/{self.name}"

    @property
    def integrity(self) -> str:
        return "sha384-" + base64.b64encode(hashlib.sha384(self.body).digest()).decode()

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[Path(self.name).suffix]


class GraphiQLFiles:
    """The page and its files, read once; gzip copies made on first request."""

    def __init__(self) -> None:
        self.styles = [Asset(name, (FILES / folder / name).read_bytes()) for folder, name in STYLES]
        self.scripts = [
            Asset(name, (FILES / folder / name).read_bytes()) for folder, name in SCRIPTS
        ]
        self.assets = {asset.name: asset for asset in (*self.styles, *self.scripts)}
        template = string.Template((FILES / "page.html").read_text(encoding="utf-8"))
        self.html = template.substitute(
            styles="\n".join(
                f'    <link rel="stylesheet" href="{a.url}" integrity="{a.integrity}" />'
                for a in self.styles
            ),
            scripts="\n".join(
                f'    <script src="{a.url}" integrity="{a.integrity}"></script>'
                for a in self.scripts
            ),
        )
        self._gzipped: dict[str, bytes] = {}

    def routes(self) -> list[Route]:
        """/graphiql/<digest>/<name>, GET and HEAD. Anything else there is the app's coded
        404 or 405; with GraphiQL switched off there is no route at all, so every path is."""
        return [Route("/graphiql/{digest}/{name}", self.asset, methods=["GET", "HEAD"])]

    async def page(self, request: Request) -> Response:
        """The answer to ``GET /graphql`` from a browser."""
        return HTMLResponse(
            self.html,
            headers={
                "Content-Security-Policy": PAGE_POLICY,
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    async def asset(self, request: Request) -> Response:
        asset = self.assets.get(request.path_params["name"])
        if asset is None or asset.digest != request.path_params["digest"]:
            raise HTTPException(404)
        headers = {
            "Cache-Control": IMMUTABLE,
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Vary": "Accept-Encoding",
        }
        body = asset.body
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = await self._gzip(asset)
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=asset.media_type, headers=headers)

    async def _gzip(self, asset: Asset) -> bytes:
        """graphiql.min.js is large and compressing it takes long enough to stall the event
        loop (docs/decisions.md), so once a process, in a thread."""
        if asset.name not in self._gzipped:
            self._gzipped[asset.name] = await anyio.to_thread.run_sync(
                lambda: gzip.compress(asset.body, compresslevel=6, mtime=0)
            )
        return self._gzipped[asset.name]
