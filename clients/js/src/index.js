// uws-py-client: the browser/Node client of the uws-py realtime protocol (docs/protocol.md).
// One dependency-free ES module: import { connect } from "./index.js".

// Pure decisions of the client, without I/O: reconnect delays, what a close code means, when a
// token expires. Kept apart so the tests can draw from them without sockets or timers.

/** Full jitter (AWS style): uniform in [0, min(max, min * 2^attempt)]. attempt counts from 0. */
export function backoffDelay(attempt, minDelay, maxDelay, random = Math.random) {
  const ceiling = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 30));
  return random() * ceiling;
}

/** Close codes after which trying again may succeed: going away, abnormal, server errors,
 * restarts, try-again-later, no status (1005) and bad gateway (1014). */
const RECONNECT_CODES = new Set([1001, 1005, 1006, 1011, 1012, 1013, 1014]);

/**
 * What to do after the socket closed: "reconnect", "refresh" (get a new token, then reconnect)
 * or "stop". Protocol errors (1002, 1003, 1007, 1009, 1010) and 4000-4999 are final because the
 * same attempt would end the same way; 1000 is the server application closing us on purpose.
 */
export function closeDecision(code, reason = "") {
  if (RECONNECT_CODES.has(code)) return "reconnect";
  if (code === 1008) {
    if (reason === "token expired") return "refresh";
    if (reason === "rate limit exceeded" || reason === "backpressure limit") return "reconnect";
    return "stop";
  }
  if (code >= 3000 && code <= 3999) return "reconnect";
  return "stop";
}

/** The `exp` claim (seconds) of a JWT, read without verification; null when there is none. */
export function decodeJwtExp(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length < 2) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(padded), (c) => c.charCodeAt(0))));
    return typeof claims.exp === "number" ? claims.exp : null;
  } catch {
    return null;
  }
}

/**
 * Milliseconds from now until a token expiring at `expiresAt` (seconds) should be refreshed:
 * after three quarters of the time left, and never later than `refreshBefore` ms before expiry.
 */
export function refreshDelay(expiresAt, nowMs, refreshBefore = 10000) {
  const left = expiresAt * 1000 - nowMs;
  return Math.max(0, left - Math.min(refreshBefore, left / 4));
}

// The smallest event emitter that works the same in browsers and Node.
export class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  /** Calls fn on each `event`; returns a function that removes it. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const set = this._listeners.get(event);
    if (set) set.delete(fn);
  }

  emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (error) {
        if (event !== "error") this.emit("error", error);
      }
    }
  }
}

// A subscription's position and delivery order. It sends nothing itself: the client asks it
// for the SUBSCRIBE to send and feeds it what the server answers.

export class Subscription extends Emitter {
  constructor(client, topic, onMessage, since) {
    super();
    this.topic = topic;
    this.state = "unsubscribed";
    /** Epoch and last offset delivered (or published by us); null on a topic without history. */
    this.epoch = since ? since.epoch : null;
    this.offset = since ? since.offset : null;
    this._client = client;
    this._onMessage = onMessage;
    this._buffer = null; // MESSAGEs that arrive while a SUBSCRIBE is answered
    this._own = new Set(); // offsets of our own publications (echo off: they never arrive)
    this._readyResolve = null;
    this._readyReject = null;
    this.ready = new Promise((resolve, reject) => {
      this._readyResolve = resolve;
      this._readyReject = reject;
    });
    this.ready.catch(() => {});
  }

  /** Leaves the topic for good. */
  unsubscribe() {
    return this._client._unsubscribe(this);
  }

  /** The SUBSCRIBE message (without id) that resumes from the saved position. */
  _subscribeMessage() {
    this.state = "subscribing";
    this._buffer = [];
    const message = { type: "SUBSCRIBE", topic: this.topic };
    if (this.epoch !== null && this.offset !== null) {
      message.recover = true;
      message.since = { epoch: this.epoch, offset: this.offset };
    }
    return message;
  }

  _onSubscribed(reply) {
    const previous = { epoch: this.epoch, offset: this.offset };
    const buffered = this._buffer || [];
    this._buffer = null;
    this.state = "subscribed";
    const wasRecovering = reply.wasRecovering === true;
    const recovered = reply.recovered === true;
    if (typeof reply.epoch === "string") {
      if (!recovered) {
        // Not recovered (first subscribe, gap, epoch change): continue from the current top.
        this.epoch = reply.epoch;
        this.offset = reply.offset;
        this._own.clear();
      } else {
        for (const publication of reply.publications || []) {
          this._deliver({ topic: this.topic, ...publication }, true);
        }
        this.epoch = reply.epoch;
        if (this.offset === null || this.offset < reply.offset) this.offset = reply.offset;
      }
    }
    const info = { wasRecovering, recovered, epoch: this.epoch, offset: this.offset };
    this.emit("subscribed", info);
    if (wasRecovering && !recovered) this.emit("gap", { ...info, previous });
    this._readyResolve(info);
    buffered.sort((a, b) => (a.offset ?? 0) - (b.offset ?? 0));
    for (const message of buffered) this._deliver(message, false);
  }

  _receive(message) {
    if (this.state === "subscribing") this._buffer.push(message);
    else if (this.state === "subscribed") this._deliver(message, false);
  }

  /** A PRESENCE_DIFF of this topic. Not buffered like MESSAGEs during a (re)subscribe: it has no
   * offset to order by, and each one says what changed at the server whatever came before. */
  _onPresenceDiff(message) {
    if (this.state === "failed") return;
    this.emit("presence", {
      topic: this.topic,
      timestamp: typeof message.timestamp === "number" ? message.timestamp : 0,
      joins: presenceEntries(message.joins),
      leaves: presenceEntries(message.leaves),
    });
  }

  /** Our own PUBLISHED on this topic: its offset counts as seen. */
  _onOwnPublication(offset) {
    if (typeof offset !== "number" || this.offset === null || offset <= this.offset) return;
    this._own.add(offset);
    this._compact();
  }

  _deliver(message, recovered) {
    const offset = message.offset;
    if (typeof offset === "number" && this.offset !== null) {
      if (offset <= this.offset || this._own.has(offset)) return; // already delivered
      this.offset = offset;
      this._compact();
    }
    const publication = { topic: this.topic, data: message.data, from: message.from ?? null, recovered };
    if (typeof offset === "number") publication.offset = offset;
    try {
      this._onMessage(publication);
    } catch (error) {
      this._client.emit("error", error);
    }
  }

  _compact() {
    for (const seen of this._own) if (seen <= this.offset) this._own.delete(seen);
    while (this._own.has(this.offset + 1)) {
      this._own.delete(this.offset + 1);
      this.offset += 1;
    }
  }

  _onDisconnected() {
    if (this.state !== "failed") this.state = "unsubscribed";
    // What was buffered is live traffic the recovery will return again.
    this._buffer = null;
  }

  _fail(error) {
    this.state = "failed";
    this._buffer = null;
    this.emit("error", error);
    this._readyReject(error);
  }
}

/** The well-formed {clientId, userId, info} entries of a PRESENCE_RESULT or PRESENCE_DIFF list. */
export function presenceEntries(list) {
  if (!Array.isArray(list)) return [];
  return list
    .filter((entry) => entry && typeof entry === "object" && typeof entry.clientId === "string")
    .map((entry) => ({
      clientId: entry.clientId,
      userId: typeof entry.userId === "string" ? entry.userId : null,
      info: entry.info ?? null,
    }));
}

/** The server sends messages to a user on this prefix + the user id (docs/protocol.md). */
export const USER_TOPIC_PREFIX = "#user:";

// -- the client -------------------------------------------------------------------------------

export const State = Object.freeze({
  DISCONNECTED: "disconnected",
  CONNECTING: "connecting",
  CONNECTED: "connected",
  CLOSED: "closed",
});

/** An ERROR from the server (or a client-side failure with a code of its own). */
export class RealtimeError extends Error {
  constructor(code, message, reply = null) {
    super(message);
    this.name = "RealtimeError";
    this.code = code;
    this.reply = reply;
  }
}

/** A request that got no reply in time; its late reply is dropped. */
export class TimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = "TimeoutError";
  }
}

/** Thrown by getToken to say the user may not connect at all: retries stop. */
export class UnauthorizedError extends Error {
  constructor(message = "unauthorized") {
    super(message);
    this.name = "UnauthorizedError";
    this.code = "UNAUTHORIZED";
  }
}

const SUBSCRIBE_FINAL = new Set(["FORBIDDEN", "INVALID_MESSAGE", "UNKNOWN_TYPE", "NO_HISTORY"]);

const DEFAULTS = {
  minReconnectDelay: 500,
  maxReconnectDelay: 20000,
  timeout: 10000, // a request's default timeout, and the bound of one connection attempt
  pingInterval: 25000, // send PING after this long without a frame from the server
  pongTimeout: 10000, // and give the connection up when nothing came back in this long
  refreshBefore: 10000,
  maxQueue: 100,
  random: Math.random,
};

export class RealtimeClient extends Emitter {
  /**
   * @param {string} url ws:// or wss:// address of the realtime endpoint
   * @param {object} [options] see index.d.ts (ClientOptions)
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.state = State.DISCONNECTED;
    this.clientId = null;
    this.userId = null;
    this.expiresAt = null;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new Error("no WebSocket: pass options.WebSocket, or run Node with --experimental-websocket (Node 20)");
    }
    this._token = options.token ?? null;
    this._tokenStale = false;
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer, sent}
    this._outbox = []; // requests made while not connected, sent after CONNECTED
    this._subscriptions = new Map(); // topic -> Subscription
    this._attempt = 0;
    this._timers = new Set();
    this._reconnectTimer = null;
    this._refreshTimer = null;
    this._pingTimer = null;
    this._probing = null; // the socket a liveness PING is out on
    this._skewMs = 0;
    this._connectWaiters = [];
    this._started = false;
    this._unwatch = this._watchEnvironment();
  }

  /** Starts connecting (once); resolves at the first CONNECTED, rejects if the client stops first. */
  connect() {
    if (this.state === State.CONNECTED) return Promise.resolve(this);
    if (this.state === State.CLOSED) return Promise.reject(new RealtimeError("CLOSED", "client is closed"));
    const waiting = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (!this._started) {
      this._started = true;
      this._open();
    }
    return waiting;
  }

  /** Stops for good: closes the socket with 1000 and rejects everything still waiting. */
  close() {
    this._stop(null, 1000, "client closed");
  }

  /** Subscribes to `topic`; the subscription survives reconnects (see Subscription). */
  subscribe(topic, onMessage, options = {}) {
    if (typeof topic !== "string" || topic === "") throw new TypeError("topic must be a non-empty string");
    if (this._subscriptions.has(topic)) throw new Error(`already subscribed to ${JSON.stringify(topic)}`);
    if (this.state === State.CLOSED) throw new RealtimeError("CLOSED", "client is closed");
    const subscription = new Subscription(this, topic, onMessage, options.since);
    this._subscriptions.set(topic, subscription);
    if (this.state === State.CONNECTED) this._sendSubscribe(subscription);
    return subscription;
  }

  /** Publishes; resolves with the PUBLISHED reply ({topic, offset?, epoch?}). */
  publish(topic, data, options = {}) {
    const message = { topic, data };
    if (options.echo) message.echo = true;
    return this.request("PUBLISH", message, options).then((reply) => {
      const subscription = this._subscriptions.get(topic);
      if (subscription && !options.echo) subscription._onOwnPublication(reply.offset);
      return reply;
    });
  }

  /**
   * Sends {type, ...data, id} and resolves with the reply carrying that id (rejects with
   * RealtimeError on ERROR, TimeoutError after `timeout` ms). Made while not connected, it waits
   * in a bounded queue (maxQueue; beyond it rejects at once with QUEUE_FULL); the timeout counts
   * from the call. A request sent on a connection that drops before its reply rejects with
   * CONNECTION_LOST: it is not sent again, since the server may have handled it.
   */
  request(type, data = {}, options = {}) {
    if (this.state === State.CLOSED) return Promise.reject(new RealtimeError("CLOSED", "client is closed"));
    const id = this._nextId++;
    const message = { ...data, type, id };
    const timeout = options.timeout ?? this.options.timeout;
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: null, message };
      entry.timer = setTimeout(() => {
        this._pending.delete(id);
        this._outbox = this._outbox.filter((queued) => queued !== entry);
        reject(new TimeoutError(`no reply to ${type} (id ${id}) within ${timeout} ms`));
      }, timeout);
      if (this.state === State.CONNECTED) {
        this._pending.set(id, entry);
        this._send(message);
      } else if (this._outbox.length >= this.options.maxQueue) {
        clearTimeout(entry.timer);
        reject(new RealtimeError("QUEUE_FULL", `${this._outbox.length} requests already wait for a connection`));
      } else {
        this._outbox.push(entry);
      }
    });
  }

  /** HISTORY of a topic: resolves with {epoch, offset, publications}. */
  history(topic, options = {}) {
    const message = { topic };
    for (const key of ["limit", "since", "reverse"]) if (options[key] !== undefined) message[key] = options[key];
    return this.request("HISTORY", message, options);
  }

  /** PRESENCE: resolves with who is in `topic` now, [{clientId, userId, info}] in no defined order.
   * No subscription needed; rejects with RealtimeError NO_PRESENCE, FORBIDDEN or UNAVAILABLE. */
  async presence(topic, options = {}) {
    const reply = await this.request("PRESENCE", { topic }, options);
    return presenceEntries(reply.clients);
  }

  /** PRESENCE_STATS: resolves with {topic, numClients, numUsers}. */
  async presenceStats(topic, options = {}) {
    const reply = await this.request("PRESENCE_STATS", { topic }, options);
    const count = (value) => (typeof value === "number" ? value : 0);
    return { topic, numClients: count(reply.numClients), numUsers: count(reply.numUsers) };
  }

  /** The topic the server's messages to this user arrive on ("#user:<userId>"), or null. */
  get userTopic() {
    return typeof this.userId === "string" ? USER_TOPIC_PREFIX + this.userId : null;
  }

  /** Application PING; resolves with {serverTime, rtt} (rtt in ms). */
  async ping(options = {}) {
    const started = Date.now();
    const reply = await this.request("PING", {}, options);
    return { serverTime: reply.serverTime, rtt: Date.now() - started };
  }

  // -- connection lifecycle ----------------------------------------------------------------

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.emit("state", state, previous);
  }

  async _open() {
    this._reconnectTimer = null;
    this._setState(State.CONNECTING);
    this.emit("connecting", { attempt: this._attempt });
    let token;
    try {
      token = await this._currentToken();
    } catch (error) {
      if (error && error.code === "UNAUTHORIZED") return this._stop(error, 1000, "unauthorized");
      this.emit("error", error);
      return this._scheduleReconnect(1006, "getToken failed");
    }
    if (this.state !== State.CONNECTING) return;
    let ws;
    try {
      ws = token ? new this._WebSocket(this.url, ["bearer", token]) : new this._WebSocket(this.url);
    } catch (error) {
      return this._stop(error, 1006, String(error && error.message));
    }
    this._ws = ws;
    const attemptTimer = this._later(this.options.timeout, () => {
      if (this._ws === ws && this.state === State.CONNECTING) this._drop(ws, 1006, "connect timeout");
    });
    ws.onmessage = (event) => {
      if (this._ws !== ws) return;
      this._heard();
      if (typeof event.data !== "string") return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return this.emit("error", new RealtimeError("INVALID_MESSAGE", "the server sent a frame that is not JSON"));
      }
      if (message && message.type === "CONNECTED") this._clear(attemptTimer);
      this._dispatch(message);
    };
    ws.onclose = (event) => {
      this._clear(attemptTimer);
      if (this._ws === ws) this._closed(event.code, event.reason || "");
    };
    ws.onerror = () => {}; // close follows; its code decides
  }

  async _currentToken() {
    const getToken = this.options.getToken;
    if (!getToken) {
      const exp = decodeJwtExp(this._token);
      if (this._token && exp !== null && exp * 1000 <= Date.now()) {
        throw new UnauthorizedError("token expired and no getToken to renew it");
      }
      return this._token;
    }
    const exp = decodeJwtExp(this._token);
    const expiring = exp !== null && exp * 1000 - Date.now() < 1000;
    if (!this._token || this._tokenStale || expiring) {
      const token = await getToken();
      if (!token) throw new UnauthorizedError("getToken returned no token");
      this._token = token;
      this._tokenStale = false;
    }
    return this._token;
  }

  _dispatch(message) {
    if (!message || typeof message !== "object") return;
    if (message.type === "BATCH" && Array.isArray(message.messages) && !this._pending.has(message.id)) {
      for (const inner of message.messages) this._dispatch(inner);
      return;
    }
    if (message.id !== undefined && message.id !== null) {
      const entry = this._pending.get(message.id);
      if (!entry) return; // a reply to a request that timed out: dropped
      this._pending.delete(message.id);
      clearTimeout(entry.timer);
      if (message.type === "ERROR") entry.reject(new RealtimeError(message.code, message.message, message));
      else entry.resolve(message);
      return;
    }
    switch (message.type) {
      case "CONNECTED":
        return this._connected(message);
      case "MESSAGE": {
        if (message.topic === this.userTopic && this.userTopic !== null) {
          return this.emit("userMessage", { topic: message.topic, data: message.data, from: message.from ?? null });
        }
        const subscription = this._subscriptions.get(message.topic);
        if (subscription) subscription._receive(message);
        return;
      }
      case "PRESENCE_DIFF": {
        const subscription = this._subscriptions.get(message.topic);
        if (subscription) subscription._onPresenceDiff(message);
        return;
      }
      case "UNSUBSCRIBED": {
        const subscription = this._subscriptions.get(message.topic);
        if (!subscription) return;
        subscription.emit("unsubscribed", { reason: message.reason ?? null, resubscribe: message.resubscribe === true });
        if (message.resubscribe === true && this.state === State.CONNECTED) this._sendSubscribe(subscription);
        else if (message.resubscribe !== true) {
          subscription._onDisconnected();
          this._subscriptions.delete(message.topic);
        }
        return;
      }
      case "ERROR":
        return this.emit("error", new RealtimeError(message.code, message.message, message));
      default:
        return this.emit("message", message);
    }
  }

  _connected(message) {
    this.clientId = message.clientId ?? null;
    this.userId = message.userId ?? null;
    if (typeof message.serverTime === "number") this._skewMs = message.serverTime - Date.now();
    this.expiresAt = "expiresAt" in message ? message.expiresAt : decodeJwtExp(this._token);
    this._attempt = 0;
    this._setState(State.CONNECTED);
    this.emit("connected", {
      clientId: this.clientId,
      userId: this.userId,
      serverTime: message.serverTime,
      capabilities: message.capabilities ?? {},
      expiresAt: this.expiresAt,
    });
    for (const waiter of this._connectWaiters.splice(0)) waiter.resolve(this);
    for (const subscription of this._subscriptions.values()) {
      if (subscription.state !== "failed") this._sendSubscribe(subscription);
    }
    for (const entry of this._outbox.splice(0)) {
      this._pending.set(entry.message.id, entry);
      this._send(entry.message);
    }
    this._scheduleRefresh();
    this._heard();
  }

  _sendSubscribe(subscription) {
    const id = this._nextId++;
    const message = { ...subscription._subscribeMessage(), id };
    // No timeout of its own: a connection that stops answering is caught by the PING.
    this._pending.set(id, {
      message,
      timer: null,
      resolve: (reply) => {
        if (this._subscriptions.get(subscription.topic) === subscription) subscription._onSubscribed(reply);
      },
      reject: (error) => {
        if (this._subscriptions.get(subscription.topic) !== subscription) return;
        if (SUBSCRIBE_FINAL.has(error.code)) {
          this._subscriptions.delete(subscription.topic);
          subscription._fail(error);
        } else {
          subscription.emit("error", error);
          const delay = backoffDelay(1, this.options.minReconnectDelay, this.options.maxReconnectDelay, this.options.random);
          this._later(delay, () => {
            if (this.state === State.CONNECTED && this._subscriptions.get(subscription.topic) === subscription) {
              this._sendSubscribe(subscription);
            }
          });
        }
      },
    });
    this._send(message);
  }

  async _unsubscribe(subscription) {
    if (this._subscriptions.get(subscription.topic) !== subscription) return;
    this._subscriptions.delete(subscription.topic);
    subscription._onDisconnected();
    subscription.state = "unsubscribed";
    if (this.state === State.CONNECTED) {
      await this.request("UNSUBSCRIBE", { topic: subscription.topic }).catch(() => {});
    }
  }

  _send(message) {
    try {
      this._ws.send(JSON.stringify(message));
    } catch (error) {
      this.emit("error", error);
    }
  }

  _closed(code, reason) {
    const decision = closeDecision(code, reason);
    if (decision === "stop") {
      return this._stop(new RealtimeError("CLOSED", `server closed the connection: ${code} ${reason}`.trim()), code, reason);
    }
    if (decision === "refresh") {
      if (!this.options.getToken) {
        return this._stop(new RealtimeError("UNAUTHORIZED", "token expired and no getToken to renew it"), code, reason);
      }
      this._tokenStale = true;
    }
    this._scheduleReconnect(code, reason);
  }

  /** Gives up a socket without waiting for its close handshake (it may never come). */
  _drop(ws, code, reason) {
    ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(3000, reason);
    } catch {
      // already closing
    }
    if (this._ws === ws) this._closed(code, reason);
  }

  _lostConnection() {
    this._ws = null;
    this._clear(this._refreshTimer);
    this._clear(this._pingTimer);
    this._refreshTimer = this._pingTimer = null;
    for (const subscription of this._subscriptions.values()) subscription._onDisconnected();
    for (const [id, entry] of this._pending) {
      this._pending.delete(id);
      clearTimeout(entry.timer);
      entry.reject(new RealtimeError("CONNECTION_LOST", `connection lost before the reply to ${entry.message.type}`));
    }
  }

  _scheduleReconnect(code, reason) {
    const wasConnected = this.state === State.CONNECTED;
    this._lostConnection();
    if (this.state === State.CLOSED) return;
    const delay = backoffDelay(this._attempt, this.options.minReconnectDelay, this.options.maxReconnectDelay, this.options.random);
    this._attempt += 1;
    this._setState(State.DISCONNECTED);
    this.emit("disconnected", { code, reason, reconnect: true, delay, wasConnected });
    this._reconnectTimer = this._later(delay, () => this._open());
  }

  /** Skips the backoff wait (the network came back, the page became visible). */
  reconnectNow() {
    if (this.state !== State.DISCONNECTED || this._reconnectTimer === null) return;
    this._clear(this._reconnectTimer);
    this._attempt = 0;
    this._open();
  }

  _stop(error, code, reason) {
    if (this.state === State.CLOSED) return;
    const ws = this._ws;
    this._lostConnection();
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000, "client closed");
      } catch {
        // already closed
      }
    }
    for (const timer of this._timers) clearTimeout(timer);
    this._timers.clear();
    for (const entry of this._outbox.splice(0)) {
      clearTimeout(entry.timer);
      entry.reject(error || new RealtimeError("CLOSED", "client closed"));
    }
    for (const waiter of this._connectWaiters.splice(0)) waiter.reject(error || new RealtimeError("CLOSED", "client closed"));
    this._unwatch();
    this._setState(State.CLOSED);
    this.emit("closed", { code, reason, error });
  }

  // -- token refresh and liveness ------------------------------------------------------------

  _scheduleRefresh() {
    this._clear(this._refreshTimer);
    this._refreshTimer = null;
    if (typeof this.expiresAt !== "number" || !this.options.getToken) return;
    const delay = refreshDelay(this.expiresAt, Date.now() + this._skewMs, this.options.refreshBefore);
    this._refreshTimer = this._later(delay, () => this._refresh());
  }

  async _refresh() {
    this._refreshTimer = null;
    let token = null;
    try {
      token = await this.options.getToken();
      if (!token) throw new UnauthorizedError("getToken returned no token");
      const reply = await this.request("AUTH", { token });
      this._token = token;
      this.expiresAt = reply.expiresAt ?? null;
      this.emit("tokenRefreshed", { expiresAt: this.expiresAt });
      this._scheduleRefresh();
    } catch (error) {
      if (error && error.code === "UNAUTHORIZED" && error instanceof UnauthorizedError) {
        return this._stop(error, 1000, "unauthorized");
      }
      if (error instanceof RealtimeError && (error.code === "CONNECTION_LOST" || error.code === "CLOSED")) {
        // Not a failure of the token: the fresh one opens the next connection, whose CONNECTED
        // schedules the next refresh.
        if (error.code === "CONNECTION_LOST") this._token = token;
        return;
      }
      this.emit("error", error);
      if (this.state === State.CONNECTED && typeof this.expiresAt === "number") {
        const left = this.expiresAt * 1000 - (Date.now() + this._skewMs);
        if (left > 0) this._refreshTimer = this._later(Math.min(left / 2, this.options.maxReconnectDelay), () => this._refresh());
      }
    }
  }

  /** A frame arrived: the connection lives; PING again only after pingInterval of silence. */
  _heard() {
    if (this.state !== State.CONNECTED) return;
    this._clear(this._pingTimer);
    this._pingTimer = this._later(this.options.pingInterval, () => this._probe());
  }

  /** PING now; no reply within pongTimeout gives the connection up (and reconnects). */
  _probe() {
    const ws = this._ws;
    if (this.state !== State.CONNECTED || this._probing === ws) return;
    this._probing = ws;
    this.request("PING", {}, { timeout: this.options.pongTimeout })
      .catch((error) => {
        if (error instanceof TimeoutError && this._ws === ws) this._drop(ws, 1006, "ping timeout");
      })
      .finally(() => {
        if (this._probing === ws) this._probing = null;
      });
  }

  /**
   * The network came back or the page became visible. Disconnected: try now instead of at the
   * end of the backoff. Connected: the flow may have died silently while the network was away
   * (browsers do not close sockets on `offline`), so check it with a PING at once instead of
   * after pingInterval + pongTimeout.
   */
  _wake() {
    if (this.state === State.CONNECTED) this._probe();
    else this.reconnectNow();
  }

  _later(delay, fn) {
    const timer = setTimeout(() => {
      this._timers.delete(timer);
      fn();
    }, delay);
    this._timers.add(timer);
    return timer;
  }

  _clear(timer) {
    if (timer === null || timer === undefined) return;
    clearTimeout(timer);
    this._timers.delete(timer);
  }

  /** Browsers: reconnect at once when the network returns or the page becomes visible. */
  _watchEnvironment() {
    const target = globalThis.window;
    if (!target || typeof target.addEventListener !== "function") return () => {};
    const wake = () => this._wake();
    const visible = () => {
      if (globalThis.document && globalThis.document.visibilityState === "visible") wake();
    };
    target.addEventListener("online", wake);
    globalThis.document?.addEventListener("visibilitychange", visible);
    return () => {
      target.removeEventListener("online", wake);
      globalThis.document?.removeEventListener("visibilitychange", visible);
    };
  }
}

/** Creates a client and resolves once it is connected. */
export async function connect(url, options = {}) {
  const client = new RealtimeClient(url, options);
  await client.connect();
  return client;
}
