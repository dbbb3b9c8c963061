// The typed client of libgo-server's REST API. Every path, body and answer type comes from
// schema.d.ts, generated from the server's OpenAPI document (`npm run gen`).
import createClient, { type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Instance = Schemas["Instance"];
export type Task = Schemas["Task"];
export type Role = Schemas["Role"];
export type User = Schemas["User"];
export type ServerEvent = Schemas["ServerEvent"];
export type ErrorBody = Schemas["ErrorBody"];

const TOKEN = "libgo.token";

export function token(): string | null {
  return sessionStorage.getItem(TOKEN);
}

export function setToken(t: string | null) {
  if (t) sessionStorage.setItem(TOKEN, t);
  else sessionStorage.removeItem(TOKEN);
  for (const f of tokenListeners) f(t);
}

const tokenListeners = new Set<(t: string | null) => void>();
export function onToken(f: (t: string | null) => void): () => void {
  tokenListeners.add(f);
  return () => tokenListeners.delete(f);
}

/** An error answered by the server, in its documented shape. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string | null,
  ) {
    super(message);
  }
}

const auth: Middleware = {
  onRequest({ request }) {
    const t = token();
    if (t) request.headers.set("Authorization", `Bearer ${t}`);
    return request;
  },
  onResponse({ response, request }) {
    // An expired or revoked token: back to the log-in form (but not for the log-in itself).
    if (response.status === 401 && !request.url.endsWith("/login") && token()) setToken(null);
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: "" });
api.use(auth);

type Answer<T> = { data?: T; error?: unknown; response: Response };

/** The data of an answer, or an [`ApiFailure`] thrown with the server's code and message. */
export async function ok<T>(p: Promise<Answer<T>>): Promise<T> {
  let a: Answer<T>;
  try {
    a = await p;
  } catch (e) {
    throw new ApiFailure(0, "NETWORK", `the server cannot be reached: ${(e as Error).message}`);
  }
  if (!a.response.ok) {
    const body = a.error as Partial<ErrorBody & { field?: string | null }> | undefined;
    throw new ApiFailure(
      a.response.status,
      body?.code ?? `HTTP_${a.response.status}`,
      body?.message ?? (a.response.statusText || `HTTP ${a.response.status}`),
      body?.field,
    );
  }
  return a.data as T;
}

/** A WebSocket URL on this server, authenticated by the `access_token` query parameter. */
export function wsUrl(path: string, query: Record<string, string> = {}): string {
  const u = new URL(path, location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
  const t = token();
  if (t) u.searchParams.set("access_token", t);
  return u.toString();
}

/** Fetches a binary body (screenshots, downloads) with the token. */
export async function fetchBlob(path: string): Promise<Blob> {
  const r = await fetch(path, { headers: { Authorization: `Bearer ${token() ?? ""}` } });
  if (!r.ok) {
    const b = (await r.json().catch(() => null)) as ErrorBody | null;
    throw new ApiFailure(r.status, b?.code ?? `HTTP_${r.status}`, b?.message ?? r.statusText);
  }
  return r.blob();
}

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };
/** Whether a user's role shows controls of `needed`. Custom roles (sets of permissions the
 * server checks per route) show the viewer's controls; the server still decides. */
export function allows(role: string | undefined, needed: Role): boolean {
  if (role === undefined) return false;
  const rank = role in RANK ? RANK[role as Role] : RANK.viewer;
  return rank >= RANK[needed];
}

/** Every page of a paginated list. */
export async function all<T>(
  page: (page: number) => Promise<{ items: T[]; count: number }>,
  max = 10_000,
): Promise<T[]> {
  const out: T[] = [];
  for (let p = 1; out.length < max; p++) {
    const r = await page(p);
    out.push(...r.items);
    if (r.items.length === 0 || out.length >= r.count) break;
  }
  return out;
}
