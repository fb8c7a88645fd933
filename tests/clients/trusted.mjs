// Apollo Client against a lookalike server with trusted documents:
//   node trusted.mjs URL MANIFEST FULL_KEY
// The app's client sends the ids of a manifest that @apollo/generate-persisted-query-manifest
// made from trusted-app/ (generatePersistedQueryIdsFromManifest, Apollo's persisted query
// list setup); other clients send what is not listed. Prints {"results", "wire"} as JSON.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { generatePersistedQueryIdsFromManifest } from "@apollo/persisted-query-lists";

import { TRUSTED_BOOK, TRUSTED_SIMILAR } from "./trusted-app/operations.mjs";
import { outcome, recordingFetch } from "./wire.mjs";

const [url, manifest, key] = process.argv.slice(2);
const wire = {};

function client(name, links, headers = {}) {
  wire[name] = [];
  const http = new HttpLink({ uri: url, headers, fetch: recordingFetch(wire[name]) });
  return new ApolloClient({ link: ApolloLink.from([...links, http]), cache: new InMemoryCache() });
}

const ask = (apollo, query, variables = {}) =>
  outcome(() => apollo.query({ query, variables, fetchPolicy: "network-only", errorPolicy: "all" }));

const listed = (options = {}) =>
  new PersistedQueryLink({
    ...generatePersistedQueryIdsFromManifest({
      loadManifest: () => JSON.parse(readFileSync(manifest, "utf8")),
    }),
    ...options,
  });

// Not in the app, so not in its manifest.
const UNLISTED = gql`
  query Unlisted {
    book(id: "9") {
      title
      description
    }
  }
`;

const results = {};
const app = client("app", [listed()]);
results.book = await ask(app, TRUSTED_BOOK, { id: "9" });
results.similar = await ask(app, TRUSTED_SIMILAR, { id: "9", k: 3 });
const cdn = client("get", [listed({ useGETForHashedQueries: true })]);
results.bookOverGet = await ask(cdn, TRUSTED_BOOK, { id: "26415" });
// A client that sends its own text, without the list
results.unlisted = await ask(client("text", []), UNLISTED);
// Automatic persisted queries: the hash of an unlisted document, then (were the server to ask
// for it) its text: APQ must not register its way past the list
const apq = new PersistedQueryLink({
  sha256: (text) => createHash("sha256").update(text).digest("hex"),
});
results.apq = await ask(client("apq", [apq]), UNLISTED);
// The team, with a full key: anything runs
results.team = await ask(client("team", [], { authorization: `Bearer ${key}` }), UNLISTED);
process.stdout.write(JSON.stringify({ results, wire }));
