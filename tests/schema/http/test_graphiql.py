"""GraphiQL's page and files, served by the API itself: what a browser gets over HTTP.

The browser test (test_graphiql_browser.py) proves the page works; these pin the headers,
the caching, the refusals and that the vendored files are the npm registry's, untouched.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lookalike.schema.app import create_app
from lookalike.services.core.settings import Settings
from tests.paths import ROOT

VENDOR = ROOT / "schema" / "graphiql" / "vendor"
HTML = {"Accept": "text/html"}


def page(api: TestClient) -> str:
    response = api.get("/graphql", headers=HTML)
    assert response.status_code == 200
    return response.text


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="(graphiql/[^"]+)"', html)


def test_the_page_loads_everything_from_this_server(api: TestClient) -> None:
    response = api.get("/graphql", headers=HTML)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self';" in policy  # no inline script, no eval, no other origin
    assert "http" not in policy
    assert response.headers["cache-control"] == "no-cache"
    html = response.text
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html)  # nothing from elsewhere
    names = [url.rsplit("/", 1)[1] for url in asset_urls(html)]
    assert names == [
        "graphiql.min.css",
        "style.css",
        "lookalike-graphiql.css",
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "index.umd.js",
        "lookalike-graphiql.js",
    ]


def test_every_file_is_served_with_its_type_integrity_and_a_year_of_caching(
    api: TestClient,
) -> None:
    html = page(api)
    for url in asset_urls(html):
        response = api.get(f"/{url}", headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200, url
        kind = "text/css" if url.endswith(".css") else "text/javascript"
        assert response.headers["content-type"] == f"{kind}; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        # the URL names the content: the start of its SHA-256, and the page's integrity= agrees
        digest = url.split("/")[1]
        assert hashlib.sha256(response.content).hexdigest().startswith(digest)
        assert re.search(rf'"{re.escape(url)}" integrity="sha384-[A-Za-z0-9+/=]+"', html)


def test_files_are_gzipped_for_browsers_that_accept_it(api: TestClient) -> None:
    (url,) = [u for u in asset_urls(page(api)) if u.endswith("/graphiql.min.js")]
    plain = api.get(f"/{url}", headers={"Accept-Encoding": "identity"})
    raw = api.get(f"/{url}", headers={"Accept-Encoding": "gzip, br"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["vary"] == "Accept-Encoding"
    assert int(raw.headers["content-length"]) < len(plain.content) / 3
    assert raw.content == plain.content  # httpx decoded it: the same file


@pytest.mark.parametrize(
    "path",
    [
        "/graphiql/",
        "/graphiql/graphiql.min.js",
        "/graphiql/0000000000000000/graphiql.min.js",  # a digest that is not the file's
        "/graphiql/{digest}/LICENSE",  # licences ship in the package, not over HTTP
        "/graphiql/{digest}/..%2F..%2Fapp.py",
        "/graphiql/{digest}/graphiql.min.js/extra",
    ],
)
def test_anything_else_under_graphiql_is_a_coded_404(api: TestClient, path: str) -> None:
    (url,) = [u for u in asset_urls(page(api)) if u.endswith("/graphiql.min.js")]
    response = api.get(path.format(digest=url.split("/")[1]))
    assert response.status_code == 404
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_files_answer_get_and_head_only(api: TestClient) -> None:
    (url,) = [u for u in asset_urls(page(api)) if u.endswith(".css")][:1]
    assert api.head(f"/{url}").status_code == 200
    response = api.post(f"/{url}", content=b"x")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.fixture(scope="module")
def without_graphiql(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"graphiql": False}))) as client:
        yield client


def test_switched_off_there_is_no_page_and_no_file(
    api: TestClient, without_graphiql: TestClient
) -> None:
    response = without_graphiql.get("/graphql", headers=HTML)
    assert response.status_code == 404
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    for url in asset_urls(page(api)):
        refused = without_graphiql.get(f"/{url}")
        assert refused.status_code == 404
        assert refused.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


def test_the_vendored_files_are_the_ones_the_manifest_records() -> None:
    """schema/http/graphiql_vendor.py wrote them from ``npm pack``; an edit by hand shows here."""
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    recorded = set()
    for package in manifest["packages"]:
        folder = VENDOR / package["folder"]
        assert package["license"] == "MIT"
        names = set(package["files"])
        # each package keeps its licence; the explorer plugin ships none of its own (its
        # package.json says MIT; it comes from graphiql's repository, and bundles
        # graphiql-explorer, whose licence is kept beside it)
        assert "LICENSE" in names or package["name"] == "@graphiql/plugin-explorer"
        for name, file in package["files"].items():
            body = (folder / name).read_bytes()
            assert hashlib.sha256(body).hexdigest() == file["sha256"], name
            recorded.add(folder / name)
        assert json.loads((folder / "package.json").read_text())["version"] == package["version"]
    on_disk = {p for p in VENDOR.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert on_disk == recorded
