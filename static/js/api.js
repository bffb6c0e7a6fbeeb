// The REST client: same-origin cookies, the CSRF header on writes, and one
// token refresh (POST /api/auth/cookie/refresh/) when an answer is 401.
import { serverClock } from "./format.js";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || `The server answered ${status}.`);
    this.status = status;
    this.code = body?.code || "http_error";
    this.body = body || {};
  }
}

const networkError = () =>
  new ApiError(0, { code: "network_error", detail: "Cannot reach the server; check your connection." });

function readCookie(name) {
  const prefix = `${name}=`;
  const found = document.cookie.split("; ").find((part) => part.startsWith(prefix));
  return found ? decodeURIComponent(found.slice(prefix.length)) : null;
}

async function csrfToken() {
  const token = readCookie("csrftoken");
  if (token) return token;
  const response = await fetch("/api/auth/csrf/", { credentials: "same-origin" });
  return (await response.json()).csrf_token;
}

async function send(method, path, body, headers = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (body instanceof FormData) {
    init.body = body; // multipart (a file among the fields): the browser sets its Content-Type and boundary
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  try {
    if (!SAFE_METHODS.has(method)) init.headers["X-CSRFToken"] = await csrfToken();
    const response = await fetch(path, init);
    serverClock.syncRoughly(response.headers.get("Date"));
    return response;
  } catch {
    throw networkError();
  }
}

// Refresh tokens rotate (the old one is blacklisted): concurrent 401s share one refresh.
// Resolves "refreshed", "cleared" (stale cookies dropped: go on as a visitor) or "none".
let refreshing = null;

function refreshSession() {
  refreshing ??= (async () => {
    const response = await send("POST", "/api/auth/cookie/refresh/");
    if (response.ok) return "refreshed";
    const body = await response.json().catch(() => ({}));
    if (body.code === "not_authenticated") return "none";
    await send("POST", "/api/auth/cookie/logout/");
    return "cleared";
  })()
    .catch(() => "none")
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

export async function request(method, path, { body, headers } = {}, retried = false) {
  const response = await send(method, path, body, headers);
  if (response.status === 401 && !retried && !path.startsWith("/api/auth/cookie/")) {
    if ((await refreshSession()) !== "none") return request(method, path, { body, headers }, true);
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body, headers) => request("POST", path, { body, headers }),
  patch: (path, body) => request("PATCH", path, { body }),
  delete: (path) => request("DELETE", path),
  options: (path) => request("OPTIONS", path),
};

// Every page of a paginated list (a few at most).
export async function getAll(path, maxPages = 5) {
  const items = [];
  let next = path;
  for (let page = 0; next && page < maxPages; page += 1) {
    const data = await api.get(next);
    items.push(...data.results);
    next = data.next ? new URL(data.next).pathname + new URL(data.next).search : null;
  }
  return items;
}

// --- The session ----------------------------------------------------------

// Set beside the token cookies at log-in and refresh, cleared at log-out (accounts/apis.py).
const SESSION_HINT_COOKIE = "signed_in";
let userPromise = null;

// The logged-in user, or null for a visitor. Without the hint there is no session
// to ask about: a visitor's page makes no request that would fail with 401.
export function currentUser() {
  if (!readCookie(SESSION_HINT_COOKIE)) userPromise ??= Promise.resolve(null);
  userPromise ??= api.get("/api/users/me/").catch((error) => {
    if (error.status !== 401 && error.status !== 403) {
      userPromise = null;
      throw error;
    }
    // The session is gone for good (the refresh failed too): ask no more.
    document.cookie = `${SESSION_HINT_COOKIE}=; Max-Age=0; Path=/; SameSite=Lax`;
    return null;
  });
  return userPromise;
}

export async function logIn(username, password) {
  const user = await api.post("/api/auth/cookie/login/", { username, password });
  userPromise = Promise.resolve(user);
  return user;
}

export async function logOut() {
  await api.post("/api/auth/cookie/logout/");
  userPromise = Promise.resolve(null);
}

export function register(fields) {
  return api.post("/api/auth/register/", fields);
}
