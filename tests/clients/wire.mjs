// What went over the wire: a fetch that logs every request a client makes and the answer it
// got, so the tests can check the protocol (hash only or query text, GET or POST, the
// multipart map) and not just the client's final result.

export function recordingFetch(wire) {
  return async (input, init = {}) => {
    const url = new URL(typeof input === "string" ? input : input.url);
    const method = (init.method ?? "GET").toUpperCase();
    const headers = new Headers(init.headers);
    const sent = { method, accept: headers.get("accept") };
    if (method === "GET") {
      sent.query = url.searchParams.get("query");
      sent.extensions = JSON.parse(url.searchParams.get("extensions") ?? "null");
    } else if (init.body instanceof FormData) {
      const operations = JSON.parse(init.body.get("operations"));
      sent.query = operations.query ?? null;
      sent.extensions = operations.extensions ?? null;
      sent.map = JSON.parse(init.body.get("map"));
      sent.files = [...init.body.keys()].filter((key) => !["operations", "map"].includes(key));
      sent.preflight = headers.get("apollo-require-preflight");
    } else {
      const body = JSON.parse(init.body);
      sent.query = body.query ?? null;
      sent.extensions = body.extensions ?? null;
    }
    const response = await fetch(input, init);
    const text = await response.clone().text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = { text: text.slice(0, 200) };
    }
    wire.push({
      ...sent,
      hash: sent.extensions?.persistedQuery?.sha256Hash ?? null,
      status: response.status,
      contentType: response.headers.get("content-type"),
      codes: (body.errors ?? []).map((error) => error.extensions?.code ?? null),
    });
    return response;
  };
}

// One client call's outcome as plain JSON: its data, or the codes of its errors.
export async function outcome(call) {
  try {
    const result = await call();
    return { data: result.data ?? null, errors: errorsOf(result.error) };
  } catch (error) {
    return { data: null, errors: errorsOf(error) };
  }
}

function errorsOf(error) {
  if (!error) return [];
  if (Array.isArray(error.errors)) {
    return error.errors.map((e) => ({ message: e.message, code: e.extensions?.code ?? null }));
  }
  const body = error.bodyText ? safeJSON(error.bodyText) : null;
  if (body?.errors) {
    return body.errors.map((e) => ({ message: e.message, code: e.extensions?.code ?? null }));
  }
  return [{ message: String(error.message ?? error), code: null, status: error.statusCode }];
}

function safeJSON(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
