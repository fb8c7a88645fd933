// apollo-upload-client (Apollo's upload link) against a real lookalike server:
//   node upload.mjs URL KEY ORL_DIR
// enrols one ORL person from a photo, identifies them from another, then sends one file as
// two variables of one operation; prints {"results": {...}, "wire": [...]} on stdout.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { ApolloClient, InMemoryCache, gql } from "@apollo/client";
import UploadHttpLink from "apollo-upload-client/UploadHttpLink.mjs";

import { outcome, recordingFetch } from "./wire.mjs";

const [url, key, orl] = process.argv.slice(2);
const wire = [];

function client(headers) {
  return new ApolloClient({
    link: new UploadHttpLink({ uri: url, headers, fetch: recordingFetch(wire) }),
    cache: new InMemoryCache(),
  });
}

async function photo(person, number) {
  const bytes = await readFile(join(orl, person, `${number}.png`));
  return new File([bytes], `${person}-${number}.png`, { type: "image/png" });
}

const ENROLL = gql`
  mutation Enroll($id: ID!, $image: Upload!) {
    enrollFace(personId: $id, image: $image, name: "Apollo upload") {
      id
      faceCount
    }
  }
`;
const IDENTIFY = gql`
  mutation Identify($image: Upload!) {
    identifyFace(image: $image, k: 1) {
      person {
        id
      }
      facesDetected
    }
  }
`;
const TWICE = gql`
  mutation Twice($a: Upload!, $b: Upload!) {
    a: identifyFace(image: $a, k: 1) {
      person {
        id
      }
      facesDetected
    }
    b: identifyFace(image: $b, k: 1) {
      person {
        id
      }
      facesDetected
    }
  }
`;

const apollo = client({ authorization: `Bearer ${key}`, "Apollo-Require-Preflight": "true" });
const withoutPreflight = client({ authorization: `Bearer ${key}` });
const send = (c, mutation, variables) =>
  outcome(() => c.mutate({ mutation, variables, errorPolicy: "all" }));

const results = {};
results.enroll = await send(apollo, ENROLL, { id: "apollo-s1", image: await photo("s1", 1) });
results.identify = await send(apollo, IDENTIFY, { image: await photo("s1", 7) });
results.noPreflight = await send(withoutPreflight, IDENTIFY, { image: await photo("s1", 7) });
// One File in two variables: the client sends it once and maps it to both paths.
const same = await photo("s1", 8);
results.twice = await send(apollo, TWICE, { a: same, b: same });
process.stdout.write(JSON.stringify({ results, wire }));
