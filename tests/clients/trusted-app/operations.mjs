// The operations of a small app that ships with trusted documents: the manifest is made from
// this file by @apollo/generate-persisted-query-manifest (its CLI, as the app's build would
// run it), and trusted.mjs sends them through Apollo Client's persisted queries link.
import { gql } from "@apollo/client";

export const TRUSTED_BOOK = gql`
  query TrustedBook($id: ID!) {
    book(id: $id) {
      id
      title
    }
  }
`;

export const TRUSTED_SIMILAR = gql`
  query TrustedSimilar($id: ID!, $k: Int!) {
    book(id: $id) {
      similar(k: $k) {
        distance
        book {
          id
        }
      }
    }
  }
`;
