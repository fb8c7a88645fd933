"""GraphiQL in a real browser with no internet: Debian's chromium driven by Playwright.

Every request the page makes to anything but this machine is aborted and counted; a test
fails if the page asked for anything off the machine, if its Content-Security-Policy blocked
anything, or if the page logged an error. The server is a real ``lookalike serve`` with the
default limits, so GraphiQL's own introspection query must pass them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Route, sync_playwright

from tests.conftest import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL = {"127.0.0.1", "localhost", "::1", "[::1]"}
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"


def _spaced(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


RESPONSE = ".graphiql-response"
EDITOR_TEXT = "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue()"
# Collects what the Content-Security-Policy blocked, from before the page's first script.
CSP_LISTENER = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.cspViolations.push(e.violatedDirective + " " + e.blockedURI));
"""


def shows(name: str, url: str) -> bool:
    return name in unquote_plus(url)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: .ci/run installs it (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Offline:
    """One page whose requests off this machine are aborted, and what it did."""

    page: Page
    aborted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    posts: list[Request] = field(default_factory=list)

    def route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith("data:") or urlsplit(url).hostname in LOCAL:
            route.continue_()
        else:
            self.aborted.append(url)
            route.abort("internetdisconnected")

    def console(self, message: ConsoleMessage) -> None:
        # Chromium logs every HTTP error status; a GraphQL error may come with one (the
        # GraphQL-over-HTTP media type), and the tests check those answers themselves.
        answer = message.text.startswith("Failed to load resource") and message.location.get(
            "url", ""
        ).endswith("/graphql")
        if message.type == "error" and not answer:
            self.errors.append(message.text)

    def check(self) -> None:
        """Nothing came from the internet, nothing was blocked, nothing went wrong."""
        assert self.aborted == []
        assert self.page.evaluate("window.cspViolations") == []
        assert self.errors == []

    def type_into(self, editor: str, text: str) -> None:
        """Type as a person would, and see the editor hold the text once GraphiQL has taken
        the edit in: on a busy machine an edit can land while GraphiQL is still writing the
        previous one back into the editor (seen once in five runs: the keystrokes out of
        order), which a person would see and type again; so does this, at most twice more."""
        value = f"document.querySelector({json.dumps(editor)}).CodeMirror.getValue()"
        for _ in range(3):
            self.page.locator(editor).click()
            self.page.keyboard.press("Control+A")
            self.page.keyboard.press("Delete")
            self.page.keyboard.type(text)
            self.page.wait_for_timeout(400)  # GraphiQL's debounce of an edit is 300 ms
            if _spaced(self.page.evaluate(value)) == _spaced(text):
                return
        raise AssertionError(f"the editor does not hold {text!r}")

    def run(self) -> dict[str, Any]:
        """Run the query in the editor; the answer GraphiQL shows, as JSON."""
        before = len(self.posts)
        self.page.locator(QUERY_EDITOR).click()
        with self.page.expect_response(lambda r: r.request.method == "POST"):
            self.page.keyboard.press("Control+Enter")
        assert len(self.posts) == before + 1
        response = self.page.locator(RESPONSE)
        response.locator(".CodeMirror-line").first.wait_for()
        shown: dict[str, Any] = json.loads(
            self.page.evaluate(
                "document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue()"
            )
        )
        return shown


@pytest.fixture
def graphiql(browser: Browser, live_server: LiveServer) -> Iterator[Offline]:
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    offline = Offline(page)
    page.route("**/*", offline.route)
    page.add_init_script(CSP_LISTENER)
    page.on("console", offline.console)
    page.on("pageerror", lambda e: offline.errors.append(str(e)))
    page.on(
        "request",
        lambda r: offline.posts.append(r) if r.method == "POST" and "/graphql" in r.url else None,
    )
    page.goto(f"{live_server.url}/graphql")
    page.locator(QUERY_EDITOR).wait_for(timeout=30_000)
    yield offline
    context.close()


def test_a_typed_query_runs_and_shows_its_answer_with_no_internet(graphiql: Offline) -> None:
    query = '{ book(id: "9") { title author similar(k: 2) { book { id } } } }'
    graphiql.type_into(QUERY_EDITOR, query)
    assert graphiql.page.evaluate(EDITOR_TEXT) == query
    shown = graphiql.run()
    assert shown["data"]["book"] == {
        "title": "Transformers: The Ultimate Guide",
        "author": "Simon Furman",
        "similar": [{"book": {"id": "15"}}, {"book": {"id": "3"}}],
    }
    sent = graphiql.posts[-1]
    assert json.loads(sent.post_data or "")["query"] == query
    assert sent.headers["accept"] == "application/graphql-response+json, application/json"
    graphiql.check()


def test_the_documentation_explorer_lists_the_schema(graphiql: Offline) -> None:
    page = graphiql.page
    page.get_by_role("button", name="Show Documentation Explorer").click()
    docs = page.locator(".graphiql-doc-explorer")
    docs.get_by_text(re.compile("Root Types|Error fetching schema")).first.wait_for()
    assert "Error fetching schema" not in docs.inner_text()  # the introspection was refused
    docs.locator("a", has_text="Query").first.click()
    fields = docs.locator(".graphiql-doc-explorer-field-name")
    fields.first.wait_for()
    assert set(fields.all_inner_texts()) >= {
        "book",
        "books",
        "searchBooks",
        "genres",
        "person",
        "people",
    }
    # and the descriptions come with them
    assert "best answer the text" in docs.inner_text()
    graphiql.check()


def test_the_explorer_plugin_builds_a_query_that_runs(graphiql: Offline) -> None:
    graphiql.type_into(QUERY_EDITOR, "{ }")
    page = graphiql.page
    page.get_by_role("button", name="Show GraphiQL Explorer").click()
    explorer = page.locator(".graphiql-explorer-root")
    explorer.get_by_text("searchBooks", exact=True).wait_for()
    for name in ("genres", "name", "count"):  # tick the field, then its two subfields
        explorer.get_by_text(name, exact=True).first.click()
        # GraphiQL tells the page (which puts the query in the URL) and the explorer of an
        # edit after a debounce: the next tick must wait for it, as a person's would.
        page.wait_for_url(partial(shows, name))
    assert re.sub(r"\s+", " ", page.evaluate(EDITOR_TEXT)) == (
        "query MyQuery { genres { name count } }"
    )
    shown = graphiql.run()
    genres = shown["data"]["genres"]
    assert len(genres) > 50
    assert {"name", "count"} <= set(genres[0])
    graphiql.check()


def test_the_headers_editor_sends_the_api_key(graphiql: Offline, live_server: LiveServer) -> None:
    graphiql.type_into(QUERY_EDITOR, 'mutation { deletePerson(id: "nobody-here") }')
    refused = graphiql.run()
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    graphiql.page.get_by_text("Headers", exact=True).click()
    headers_editor = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
    graphiql.type_into(headers_editor, f'{{"Authorization": "Bearer {live_server.key}"}}')
    answered = graphiql.run()
    assert answered["data"] == {"deletePerson": False}
    assert graphiql.posts[-1].headers["authorization"] == f"Bearer {live_server.key}"
    graphiql.check()
