// Starts GraphiQL with the explorer plugin and the headers editor, as Strawberry's page does,
// from files this server serves itself (no CDN). A file of its own rather than an inline
// script, so the page's Content-Security-Policy can allow scripts from this origin only.
"use strict";

const EXAMPLE_QUERY = `# lookalike: similar books and enrolled faces
#
# Ctrl-Enter (or the play button) runs a query.
# The first icon on the left shows the docs, every
# field with its description; the third builds a
# query from the fields you tick. Mutations need a
# key once the server has LOOKALIKE_API_KEYS: put
#   {"Authorization": "Bearer <key>"}
# in Headers below.

{
  book(id: "26415") {
    title
    similar(k: 5) {
      distance
      book { id title author }
    }
  }
}
`;

// ?q=...&variables=... make a query shareable as a link (headers stay out of the URL).
const parameters = Object.fromEntries(new URLSearchParams(window.location.search));

function updateURL(changes) {
  Object.assign(parameters, changes);
  const search = new URLSearchParams(
    Object.entries(parameters).filter(([, value]) => Boolean(value)),
  ).toString();
  history.replaceState(null, "", search ? "?" + search : window.location.pathname);
}

const fetcher = GraphiQL.createFetcher({
  url: window.location.href.split("?")[0],
  // The GraphQL-over-HTTP media type first; one answer per request (no incremental delivery).
  headers: { accept: "application/graphql-response+json, application/json" },
  enableIncrementalDelivery: false,
});

const explorer = GraphiQLPluginExplorer.explorerPlugin();

function LookalikeGraphiQL() {
  const [query, setQuery] = React.useState(parameters.q || EXAMPLE_QUERY);
  const [variables, setVariables] = React.useState(parameters.variables);
  const [headers, setHeaders] = React.useState(parameters.headers);

  return React.createElement(GraphiQL, {
    fetcher,
    plugins: [explorer],
    query,
    variables,
    headers,
    onEditQuery(text) {
      setQuery(text);
      updateURL({ q: text });
    },
    onEditVariables(text) {
      setVariables(text);
      updateURL({ variables: text });
    },
    onEditHeaders: setHeaders,
    defaultEditorToolsVisibility: true,
    inputValueDeprecation: true,
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: true,
  });
}

ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(LookalikeGraphiQL),
);
