// A WebSocket that stays connected: a fresh single-use ticket for each
// connection, reconnects with backoff, and `?since=<last seq>` so that a lot
// room replays every event missed while the connection was down.
import { api } from "./api.js";

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];
const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 45000;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_NOT_FOUND = 4404;

// A request's id (its idempotency key for a bid), to match its answer. randomUUID needs a secure context;
// getRandomValues does not.
export const newRequestId = () =>
  crypto.randomUUID?.() ?? [...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, "0")).join("");

export class LiveSocket {
  // onState receives "connecting", "live", "reconnecting" or "gone".
  constructor(path, { onFrame, onState = () => {}, authenticated = false, trackSeq = false }) {
    Object.assign(this, { path, onFrame, onState, authenticated, trackSeq });
    this.state = null;
    this.lastSeq = null;
    this.attempt = 0;
    this.ws = null;
    this.retryTimer = null;
    window.addEventListener("online", () => this.retryNow());
  }

  start() {
    this.setState("connecting");
    this.connect();
  }

  send(frame) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  get live() {
    return this.state === "live";
  }

  async connect() {
    this.retryTimer = null;
    const params = new URLSearchParams();
    if (this.authenticated) {
      try {
        params.set("ticket", (await api.post("/api/auth/ws-ticket/")).ticket);
      } catch (error) {
        // Logged out meanwhile: go on watching as a visitor. Otherwise try again later.
        if (error.status !== 401 && error.status !== 403) return this.retryLater();
        this.authenticated = false;
      }
    }
    if (this.trackSeq && this.lastSeq !== null) params.set("since", String(this.lastSeq));
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = params.toString() ? `?${params}` : "";
    const ws = new WebSocket(`${scheme}//${location.host}${this.path}${query}`);
    this.ws = ws;
    // Bad credentials open and close at once (4401), so "live" waits for the first frame: the PONG.
    ws.onopen = () => {
      this.lastFrameAt = Date.now();
      this.send({ type: "PING" });
      this.pinger = setInterval(() => this.heartbeat(ws), PING_EVERY_MS);
    };
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = (event) => this.closed(ws, event.code);
  }

  receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    this.lastFrameAt = Date.now();
    this.attempt = 0;
    this.setState("live");
    if (this.trackSeq && Number.isInteger(frame.seq)) {
      // The server sends each seq once and in order; this only guards a replay overlap.
      if (frame.type !== "LOT_STATUS" && this.lastSeq !== null && frame.seq <= this.lastSeq) return;
      this.lastSeq = frame.seq;
    }
    this.onFrame(frame);
  }

  heartbeat(ws) {
    if (Date.now() - this.lastFrameAt < SILENCE_LIMIT_MS) {
      this.send({ type: "PING" });
      return;
    }
    // No answer for too long: the connection is dead even if the browser has not noticed.
    ws.onclose = null;
    ws.close();
    this.closed(ws, 1006);
  }

  closed(ws, code) {
    if (ws !== this.ws) return;
    clearInterval(this.pinger);
    this.ws = null;
    if (code === CLOSE_NOT_FOUND) {
      this.setState("gone");
      return;
    }
    // Refused credentials: the next attempt fetches a ticket, which also refreshes
    // the session or clears a stale access cookie.
    if (code === CLOSE_UNAUTHORIZED) this.authenticated = true;
    this.retryLater();
  }

  retryLater() {
    this.setState("reconnecting");
    const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connect(), delay * (0.75 + Math.random() / 2));
  }

  retryNow() {
    if (this.retryTimer === null) return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.onState(state);
  }
}
