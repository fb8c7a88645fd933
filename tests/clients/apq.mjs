// Apollo Client with its persisted-queries link against a real lookalike server:
//   node apq.mjs URL post|get|mismatch NONCE
// prints {"results": {...}, "wire": [...]} as JSON on stdout.
import { createHash } from "node:crypto";

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";

import { outcome, recordingFetch } from "./wire.mjs";

const [url, mode, nonce] = process.argv.slice(2);
const wire = [];

function client() {
  const persisted = new PersistedQueryLink({
    useGETForHashedQueries: mode === "get",
    ...(mode === "mismatch"
      ? { generateHash: () => "0".repeat(64) } // a client that hashes wrongly
      : { sha256: (text) => createHash("sha256").update(text).digest("hex") }),
  });
  return new ApolloClient({
    link: ApolloLink.from([persisted, new HttpLink({ uri: url, fetch: recordingFetch(wire) })]),
    cache: new InMemoryCache(),
  });
}

// The alias makes the document (and so its hash) new for each test run.
const BOOK = gql`
  query Book($id: ID!) {
    book(id: $id) {
      id
      title
      n${nonce}: author
    }
  }
`;

const ask = (apollo, id) =>
  outcome(() =>
    apollo.query({
      query: BOOK,
      variables: { id },
      fetchPolicy: "network-only", // past Apollo's cache: every ask goes to the server
      errorPolicy: "all",
    }),
  );

const results = {};
const apollo = client();
results.first = await ask(apollo, "9");
if (mode !== "mismatch") {
  results.again = await ask(apollo, "26415");
  // A client that has never sent the query: the server already knows its hash.
  results.fresh = await ask(client(), "9");
}
process.stdout.write(JSON.stringify({ results, wire }));
