// The HTTP API of CONTRACT §5, seen from the browser: a bearer token kept in sessionStorage.

const TOKEN_KEY = "miaoxiang.token";
const BASE = new URL("api/v1/", document.baseURI);

/** An HTTP error answer: `status` and the server's `detail`. */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
  }
}

let onUnauthorized = () => {};

export function savedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Called (once per failing request) when the server answers 401 to the saved token. */
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

/** `path` under /api/v1 with the non-empty `query` values as parameters. */
export function apiUrl(path, query = {}) {
  const url = new URL(path, BASE);
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

async function request(method, path, { query, body, token = savedToken() } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(apiUrl(path, query), init);
  const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
  if (!res.ok) {
    if (res.status === 401 && token === savedToken()) onUnauthorized();
    throw new ApiError(res.status, data?.detail ?? res.statusText);
  }
  return data;
}

export const get = (path, query) => request("GET", path, { query });
export const post = (path, body = {}) => request("POST", path, { body });
export const patch = (path, body = {}) => request("PATCH", path, { body });

/** Every item of a paginated list route, following `next_cursor` up to `max` items. */
export async function getAll(path, query = {}, max = 2000) {
  const items = [];
  let cursor;
  do {
    const page = await get(path, { ...query, cursor, limit: Math.min(1000, max - items.length) });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return { items, truncated: Boolean(cursor) };
}

/**
 * The role a token holds, found from the contract's own routes since it has no "who am I":
 * the token must read the overview (else 401); an admin may list push sources; an operator
 * passes the role check of acknowledging alarm 0, which does not exist, so nothing changes.
 */
export async function roleOf(token) {
  await request("GET", "stats/overview", { token });
  try {
    await request("GET", "push-sources", { token, query: { limit: 1 } });
    return "admin";
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403) throw err;
  }
  try {
    await request("POST", "alarms/0/ack", { token, body: {} });
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return "viewer";
  }
  return "operator";
}

/** An image route (`/api/v1/...`, e.g. a feedback photo's `photo_url`) fetched with the token,
 *  as a `data:` URL: the console's CSP allows `data:` images, and `<img>` cannot send the token. */
export async function dataUrl(path) {
  const res = await fetch(apiUrl(path.replace(/^\/?api\/v1\//, "")), { headers: { Authorization: `Bearer ${savedToken()}` } });
  if (!res.ok) throw new ApiError(res.status, res.statusText);
  const blob = await res.blob();
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

/** The live alarm stream (SSE), resuming after `lastEventId` when given. The token rides in
 *  the query because EventSource cannot send headers. */
export function alarmStream(lastEventId) {
  return new EventSource(apiUrl("alarms/stream", { token: savedToken(), last_event_id: lastEventId }));
}

/** Download a file route (a report) under the name the server suggests: fetch with the token,
 *  then save the answer through a temporary object URL. */
export async function download(path, query = {}, fallbackName = "download") {
  const token = savedToken();
  const res = await fetch(apiUrl(path, query), { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) {
    const data = res.headers.get("content-type")?.includes("json") ? await res.json() : null;
    if (res.status === 401 && token === savedToken()) onUnauthorized();
    throw new ApiError(res.status, data?.detail ?? res.statusText);
  }
  const disposition = res.headers.get("content-disposition") ?? "";
  const utf8 = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  const name = utf8 ? decodeURIComponent(utf8[1]) : fallbackName;
  const url = URL.createObjectURL(await res.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return name;
}
