// Types of uws-py-client (index.js). The wire format is docs/protocol.md of uws-py.

/** Full jitter: uniform in [0, min(maxDelay, minDelay * 2^attempt)] ms; attempt counts from 0. */
export function backoffDelay(attempt: number, minDelay: number, maxDelay: number, random?: () => number): number;

export type CloseDecision = "reconnect" | "refresh" | "stop";

/** What the client does after a close with this code and reason. */
export function closeDecision(code: number, reason?: string): CloseDecision;

/** The `exp` claim (seconds) of a JWT, read without verification; null when there is none. */
export function decodeJwtExp(token: string | null | undefined): number | null;

/** Milliseconds from nowMs until a token expiring at expiresAt (seconds) should be refreshed. */
export function refreshDelay(expiresAt: number, nowMs: number, refreshBefore?: number): number;

/** A map from event name to the arguments its listeners get. */
export type EventMap = Record<string, unknown[]>;

export class Emitter<Events extends EventMap = EventMap> {
  /** Calls fn on each `event`; returns a function that removes it. */
  on<K extends keyof Events & string>(event: K, fn: (...args: Events[K]) => void): () => void;
  off<K extends keyof Events & string>(event: K, fn: (...args: Events[K]) => void): void;
  emit<K extends keyof Events & string>(event: K, ...args: Events[K]): void;
}

export const State: Readonly<{
  DISCONNECTED: "disconnected";
  CONNECTING: "connecting";
  CONNECTED: "connected";
  CLOSED: "closed";
}>;
export type ClientState = (typeof State)[keyof typeof State];

/** An ERROR from the server (code as in the protocol), or a client-side failure:
 * CLOSED, CONNECTION_LOST, QUEUE_FULL, UNAUTHORIZED, INVALID_MESSAGE. */
export class RealtimeError extends Error {
  constructor(code: string, message: string, reply?: Reply | null);
  readonly code: string;
  /** The ERROR message itself, when the server sent one. */
  readonly reply: Reply | null;
}

/** A request that got no reply in time; its late reply is dropped. */
export class TimeoutError extends Error {
  constructor(message: string);
}

/** Thrown by getToken to say the user may not connect at all: retries stop. */
export class UnauthorizedError extends Error {
  constructor(message?: string);
  readonly code: "UNAUTHORIZED";
}

/** Any message from the server: its `type` and the fields of that type. */
export interface Reply {
  type: string;
  id?: number | string;
  [field: string]: unknown;
}

/** A position in a history topic's stream. */
export interface StreamPosition {
  epoch: string;
  offset: number;
}

/** One message delivered to a subscription's callback. */
export interface Publication<T = unknown> {
  topic: string;
  data: T;
  /** The publisher's clientId; null when the server published it. */
  from: string | null;
  /** Delivered from the history by a recovery (not live). */
  recovered: boolean;
  /** On a history topic: the publication's offset, increasing by one. */
  offset?: number;
}

export interface SubscribedInfo {
  /** This SUBSCRIBE asked to recover from a saved position. */
  wasRecovering: boolean;
  /** Everything missed since that position was delivered (before this event). */
  recovered: boolean;
  epoch: string | null;
  offset: number | null;
}

export interface GapInfo extends SubscribedInfo {
  /** The position the recovery started from; what came after it up to `offset` is lost. */
  previous: { epoch: string | null; offset: number | null };
}

export type SubscriptionEvents = {
  subscribed: [info: SubscribedInfo];
  gap: [info: GapInfo];
  unsubscribed: [info: { reason: string | null; resubscribe: boolean }];
  error: [error: Error];
};

export type SubscriptionState = "unsubscribed" | "subscribing" | "subscribed" | "failed";

/** A topic subscription that survives reconnects: it resubscribes from its saved position with
 * `recover: true`, delivers recovered publications before live ones and skips offsets it has
 * already delivered. */
export class Subscription<T = unknown> extends Emitter<SubscriptionEvents> {
  readonly topic: string;
  readonly state: SubscriptionState;
  /** The epoch and last offset delivered; null on a topic without history (or before SUBSCRIBED). */
  readonly epoch: string | null;
  readonly offset: number | null;
  /** Resolves at the first SUBSCRIBED; rejects when the server refuses the topic for good. */
  readonly ready: Promise<SubscribedInfo>;
  /** Leaves the topic for good. */
  unsubscribe(): Promise<void>;
}

export interface ConnectedInfo {
  clientId: string | null;
  userId: string | null;
  serverTime: number;
  capabilities: Record<string, unknown>;
  /** The token's expiry (seconds since the epoch), or null. */
  expiresAt: number | null;
}

export interface DisconnectedInfo {
  code: number;
  reason: string;
  reconnect: true;
  /** Milliseconds until the next attempt. */
  delay: number;
  /** The connection had reached CONNECTED (false: an attempt failed). */
  wasConnected: boolean;
}

export interface ClosedInfo {
  code: number;
  reason: string;
  error: Error | null;
}

export type ClientEvents = {
  state: [state: ClientState, previous: ClientState];
  connecting: [info: { attempt: number }];
  connected: [info: ConnectedInfo];
  disconnected: [info: DisconnectedInfo];
  closed: [info: ClosedInfo];
  tokenRefreshed: [info: { expiresAt: number | null }];
  /** Messages without an id that are not MESSAGE, UNSUBSCRIBED, CONNECTED or ERROR. */
  message: [message: Reply];
  error: [error: unknown];
};

/** The WebSocket constructor the client uses: the global one, or e.g. the `ws` package's. */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

export interface ClientOptions {
  /** A JWT sent as the `bearer` subprotocol (browsers cannot set headers). */
  token?: string | null;
  /** Called for the first token and whenever the current one expires; throw UnauthorizedError to stop. */
  getToken?: () => string | Promise<string>;
  WebSocket?: WebSocketConstructor;
  /** Reconnect backoff bounds in ms (full jitter); defaults 500 and 20000. */
  minReconnectDelay?: number;
  maxReconnectDelay?: number;
  /** Default request timeout, and the bound of one connection attempt, in ms (10000). */
  timeout?: number;
  /** PING after this many ms without a frame (25000); no reply within pongTimeout (10000) reconnects. */
  pingInterval?: number;
  pongTimeout?: number;
  /** Refresh the token at most this many ms before it expires (10000). */
  refreshBefore?: number;
  /** Requests made while disconnected wait in a queue of this many (100); beyond, QUEUE_FULL. */
  maxQueue?: number;
  /** The random source of the backoff jitter (Math.random). */
  random?: () => number;
}

export interface RequestOptions {
  /** Milliseconds before the request rejects with TimeoutError. */
  timeout?: number;
}

export interface PublishOptions extends RequestOptions {
  /** Also deliver this publication to our own subscription. */
  echo?: boolean;
}

export interface PublishedReply extends Reply {
  type: "PUBLISHED";
  topic: string;
  offset?: number;
  epoch?: string;
}

export interface HistoryOptions extends RequestOptions {
  limit?: number;
  since?: StreamPosition;
  reverse?: boolean;
}

export interface HistoryResult extends Reply {
  type: "HISTORY_RESULT";
  topic: string;
  epoch: string;
  offset: number;
  publications: { data: unknown; from: string | null; offset: number }[];
}

export interface SubscribeOptions {
  /** Resume from this position (recovering what came after it) instead of the current top. */
  since?: StreamPosition;
}

export class RealtimeClient extends Emitter<ClientEvents> {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ClientState;
  readonly clientId: string | null;
  readonly userId: string | null;
  readonly expiresAt: number | null;
  /** Starts connecting (once); resolves at the first CONNECTED, rejects if the client stops first. */
  connect(): Promise<this>;
  /** Stops for good: closes with 1000 and rejects everything still waiting. */
  close(): void;
  /** Skips the backoff wait when disconnected. */
  reconnectNow(): void;
  subscribe<T = unknown>(topic: string, onMessage: (publication: Publication<T>) => void, options?: SubscribeOptions): Subscription<T>;
  publish(topic: string, data: unknown, options?: PublishOptions): Promise<PublishedReply>;
  /** Sends {type, ...data, id}; resolves with the reply carrying that id. */
  request<R extends Reply = Reply>(type: string, data?: Record<string, unknown>, options?: RequestOptions): Promise<R>;
  history(topic: string, options?: HistoryOptions): Promise<HistoryResult>;
  /** Application PING: the server's clock and the round trip in ms. */
  ping(options?: RequestOptions): Promise<{ serverTime: number; rtt: number }>;
}

/** Creates a client and resolves once it is connected. */
export function connect(url: string, options?: ClientOptions): Promise<RealtimeClient>;
