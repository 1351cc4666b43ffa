// The relay's status page for its admins: clusters, their agents, activity and recent refusals; live, and a plain table without JavaScript.
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Context, Hono } from "hono";
import { getCookie, setCookie, deleteCookie } from "hono/cookie";
import { html } from "hono/html";
import { bodyLimit } from "hono/body-limit";
import { findRole, roleAtLeast, type Identity } from "../auth/index.ts";
import { decodeJwt } from "jose";
import { Forbidden, toStatus } from "../errors/index.ts";
import type { ClusterActivity, Refusal } from "./activity.ts";
import type { RelayStore } from "./store/index.ts";
import type { TunnelRegistry } from "./tunnel-registry.ts";
import { remoteAddressOf, type UserAccess } from "./user-access.ts";

export interface StatusPageDeps {
  store: RelayStore;
  registry: TunnelRegistry;
  access: UserAccess;
  activity: ClusterActivity;
  /** The relay's public URL: its origin is the only one a form may come from. */
  relayUrl: string;
  /** This relay's name in a group of replicas (the "replica" column). */
  replicaId: string;
  now?: () => number;
}

/** What the page and `/ui/status.json` show one admin. */
export interface StatusSnapshot {
  user: string;
  relayAdmin: boolean;
  generatedAt: string;
  clusters: {
    name: string; connected: boolean; enrolled: boolean; since: string | null; lastSeen: string | null; agentVersion: string | null;
    kubernetesVersion: string | null; replica: string | null; activeStreams: number; requestsPerSecond: number;
  }[];
  refusals: Refusal[];
}

/** A signed-in admin: who, which clusters they may see (all, for a relay-admin), the form token. */
interface Session {
  identity: Identity;
  relayAdmin: boolean;
  csrf: string;
  expiresAt: number;
}

/** A session lasts as long as the token it came from, and never more than this (ms). */
const MAX_SESSION_MS = 8 * 60 * 60_000;
const MAX_SESSIONS = 1_000;
const MAX_SESSIONS_PER_USER = 5;
const MAX_FORM_BYTES = 16 * 1024;
/** How often the page's script asks for fresh figures (ms); without JavaScript, the page reloads itself. */
export const STATUS_REFRESH_MS = 2_000;

/**
 * Every response of the page: nothing from elsewhere, no inline script or style (the script and
 * the stylesheet are files of this relay), no framing, no referrer, never cached.
 */
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  // Not no-referrer: with it a browser sends "Origin: null" on the page's own forms (Fetch spec,
  // serializing a request origin), and the origin check below could not tell them apart.
  "referrer-policy": "same-origin",
  "cache-control": "no-store",
};

/**
 * Adds the status page: `GET /` (the sign-in form, or the page), `POST /ui/sign-in` (a token in the
 * form body, never in a URL; checked like any other token, rate-limited per address; a
 * relay-admin or a cluster-admin grant is needed), `POST /ui/sign-out`, `GET /ui/status.json` (what
 * the script refreshes), `/ui/app.js`, `/ui/app.css`. The session is an HttpOnly, SameSite=Strict
 * cookie (`__Host-` and Secure over https); forms carry a per-session CSRF token and must come from
 * the relay's own origin. A cluster-admin sees only their clusters, and refusals on them.
 */
export function registerStatusPage(app: Hono, deps: StatusPageDeps): void {
  const now = deps.now ?? Date.now;
  const secure = deps.relayUrl.startsWith("https://");
  const cookieName = secure ? "__Host-arc_session" : "arc_session";
  const sessions = new Map<string, Session>();
  const origin = new URL(deps.relayUrl).origin;

  const withHeaders = (c: Context) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) c.header(name, value);
  };
  const sessionOf = (c: Context): Session | undefined => {
    const id = getCookie(c, cookieName);
    const session = id ? sessions.get(id) : undefined;
    if (session && session.expiresAt <= now()) {
      sessions.delete(id!);
      return undefined;
    }
    return session;
  };
  const sameOrigin = (c: Context) => {
    // A browser sends Origin on every POST; a form from another site cannot pass for ours.
    const from = c.req.header("origin");
    return from === origin || ((from === undefined || from === "null") && c.req.header("sec-fetch-site") === "same-origin");
  };
  const csrfMatches = (session: Session, given: unknown) => {
    const a = Buffer.from(typeof given === "string" ? given : "");
    const b = Buffer.from(session.csrf);
    return a.length === b.length && timingSafeEqual(a, b);
  };

  const snapshot = async (session: Session): Promise<StatusSnapshot> => {
    const [grants, presence] = await Promise.all([deps.store.listGrants(), deps.store.listPresence(new Date(now()))]);
    const holder = new Map(presence.map((p) => [p.cluster, p.replicaId]));
    // What the admin may see is decided on every refresh: a grant taken away takes the view with it.
    session.relayAdmin = roleAtLeast(findRole(session.identity, "*", grants), "relay-admin");
    const clusters = (await deps.store.listClusters())
      .filter((c) => session.relayAdmin || roleAtLeast(findRole(session.identity, c.name, grants), "cluster-admin"))
      .map((c) => {
        const tunnel = deps.registry.get(c.name);
        return {
          name: c.name,
          connected: tunnel !== undefined || holder.has(c.name),
          enrolled: c.agentKey !== undefined,
          since: tunnel?.connectedAt.toISOString() ?? null,
          lastSeen: c.lastSeen?.toISOString() ?? null,
          agentVersion: tunnel?.agentVersion ?? c.agentVersion ?? null,
          kubernetesVersion: tunnel?.kubernetesVersion ?? c.kubernetesVersion ?? null,
          // The store says which replica holds the tunnel (any replica's); this one knows its own at once.
          replica: tunnel ? deps.replicaId : holder.get(c.name) ?? null,
          activeStreams: deps.activity.active(c.name),
          requestsPerSecond: Number(deps.activity.ratePerSecond(c.name).toFixed(2)),
        };
      });
    const visible = new Set(clusters.map((c) => c.name));
    const refusals = deps.activity.refusals().filter((r) => session.relayAdmin || visible.has(r.cluster));
    return { user: session.identity.user, relayAdmin: session.relayAdmin, generatedAt: new Date(now()).toISOString(), clusters, refusals };
  };

  app.get("/", async (c) => {
    withHeaders(c);
    const session = sessionOf(c);
    if (!session) return c.html(signInPage());
    return c.html(statusPage(await snapshot(session), session.csrf));
  });

  // A form holds a token or a CSRF token: a few KiB. Anything larger is refused before it is read.
  app.use("/ui/*", bodyLimit({
    maxSize: MAX_FORM_BYTES,
    onError: (c) => {
      withHeaders(c);
      return c.html(signInPage(`That form is larger than ${MAX_FORM_BYTES / 1024} KiB.`), 413);
    },
  }));

  app.post("/ui/sign-in", async (c) => {
    withHeaders(c);
    if (!sameOrigin(c)) return c.html(signInPage("This form must be sent from the relay's own page."), 403);
    const form = await c.req.parseBody();
    const token = typeof form.token === "string" ? form.token.trim() : "";
    // A token is base64url and dots; anything else (a NUL, a line break) is no token at all.
    if (!/^[A-Za-z0-9._~+/=-]+$/.test(token)) return c.html(signInPage("Paste a token (arcrelay token create, or your identity provider's ID token)."), 400);
    let identity: Identity;
    try {
      identity = await deps.access.authenticate(new Headers({ authorization: `Bearer ${token}` }), remoteAddressOf(c.env), c.req.raw.signal);
    } catch (error) {
      return c.html(signInPage(`Sign-in refused: ${(error as Error).message}`), toStatus(error).code as 401);
    }
    const grants = await deps.store.listGrants();
    const relayAdmin = roleAtLeast(findRole(identity, "*", grants), "relay-admin");
    const adminsAny = relayAdmin || grants.some((g) => roleAtLeast(g.role, "cluster-admin") && findRole(identity, g.cluster, [g]) !== undefined);
    if (!adminsAny) {
      const refusal = new Forbidden(`user "${identity.user}" may not see the relay's status: that needs a relay-admin grant, or cluster-admin on a cluster`);
      return c.html(signInPage(refusal.message), 403);
    }
    const id = randomBytes(32).toString("base64url");
    // The token verified, so it is a JWT: its exp bounds the session.
    const { exp } = decodeJwt(token);
    const tokenExpiry = typeof exp === "number" ? exp * 1000 : now() + MAX_SESSION_MS;
    // One admin's sign-ins replace their own oldest session, never someone else's.
    const own = [...sessions.entries()].filter(([, other]) => other.identity.user === identity.user && other.identity.issuer === identity.issuer);
    if (own.length >= MAX_SESSIONS_PER_USER) sessions.delete(own[0]![0]);
    else if (sessions.size >= MAX_SESSIONS) sessions.delete(sessions.keys().next().value!);
    sessions.set(id, { identity, relayAdmin, csrf: randomBytes(32).toString("base64url"), expiresAt: Math.min(tokenExpiry, now() + MAX_SESSION_MS) });
    setCookie(c, cookieName, id, { httpOnly: true, sameSite: "Strict", secure, path: "/", maxAge: Math.floor(MAX_SESSION_MS / 1000) });
    return c.redirect("/", 303);
  });

  app.post("/ui/sign-out", async (c) => {
    withHeaders(c);
    const session = sessionOf(c);
    // Session and origin first: a body is read only for a signed-in admin's own page.
    if (!session || !sameOrigin(c)) return c.html(signInPage("Sign-out refused: that form did not come from this page."), 403);
    const form = await c.req.parseBody();
    if (!csrfMatches(session, form.csrf)) return c.html(signInPage("Sign-out refused: that form did not come from this page."), 403);
    sessions.delete(getCookie(c, cookieName)!);
    deleteCookie(c, cookieName, { path: "/", secure });
    return c.redirect("/", 303);
  });

  app.get("/ui/status.json", async (c) => {
    withHeaders(c);
    const session = sessionOf(c);
    if (!session) return c.json({ message: "sign in again" }, 401);
    return c.json(await snapshot(session));
  });

  app.get("/ui/app.js", (c) => {
    withHeaders(c);
    return c.body(APP_JS, 200, { "content-type": "text/javascript; charset=utf-8" });
  });
  app.get("/ui/app.css", (c) => {
    withHeaders(c);
    return c.body(APP_CSS, 200, { "content-type": "text/css; charset=utf-8" });
  });
}

/** The same words as `arcrelay cluster list` and `arcproxy clusters`. */
function clusterState(c: { connected: boolean; enrolled: boolean }): string {
  return c.connected ? "connected" : c.enrolled ? "offline" : "awaiting-enrollment";
}

function layout(title: string, body: unknown, refresh = false) {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<link rel="stylesheet" href="/ui/app.css">
${refresh ? html`<noscript><meta http-equiv="refresh" content="${Math.round(STATUS_REFRESH_MS / 1000) + 3}"></noscript>` : ""}
</head>
<body>
${body}
${refresh ? html`<script src="/ui/app.js" defer></script>` : ""}
</body>
</html>`;
}

function signInPage(message?: string) {
  return layout("cluster-connect relay: sign in", html`
<main class="narrow">
<h1>cluster-connect relay</h1>
<p>Sign in with a token of a relay admin or a cluster admin: <code>arcrelay token create</code>, or your identity provider's ID token.</p>
${message ? html`<p class="error" role="alert">${message}</p>` : ""}
<form method="post" action="/ui/sign-in" autocomplete="off">
<label for="token">Token</label>
<textarea id="token" name="token" rows="4" required spellcheck="false"></textarea>
<button type="submit">Sign in</button>
</form>
</main>`);
}

function statusPage(s: StatusSnapshot, csrf: string) {
  return layout("cluster-connect relay: status", html`
<header>
<h1>cluster-connect relay</h1>
<form method="post" action="/ui/sign-out"><input type="hidden" name="csrf" value="${csrf}"><span>${s.user}${s.relayAdmin ? " (relay admin)" : ""}</span> <button type="submit">Sign out</button></form>
</header>
<main>
<h2>Clusters <small id="generated">as of ${s.generatedAt}</small></h2>
<table id="clusters">
<thead><tr><th>Cluster</th><th>Status</th><th>Since</th><th>Last seen</th><th>Agent</th><th>Kubernetes</th><th>Replica</th><th>Active streams</th><th>Requests/s</th></tr></thead>
<tbody>${s.clusters.map((c) => html`<tr data-cluster="${c.name}"><td>${c.name}</td><td class="${c.connected ? "up" : "down"}">${clusterState(c)}</td><td>${c.since ?? ""}</td><td>${c.lastSeen ?? ""}</td><td>${c.agentVersion ?? ""}</td><td>${c.kubernetesVersion ?? ""}</td><td>${c.replica ?? ""}</td><td>${c.activeStreams}</td><td>${c.requestsPerSecond}</td></tr>`)}</tbody>
</table>
${s.clusters.length === 0 ? html`<p>No cluster you administer is registered.</p>` : ""}
<h2>Recent refusals</h2>
<table id="refusals">
<thead><tr><th>Time</th><th>Cluster</th><th>User</th><th>Code</th><th>Message</th></tr></thead>
<tbody>${s.refusals.map((r) => html`<tr><td>${r.at}</td><td>${r.cluster}</td><td>${r.user}</td><td>${r.code}</td><td>${r.message}</td></tr>`)}</tbody>
</table>
</main>`, true);
}

// The page's script: polls /ui/status.json and rewrites the two tables with textContent only.
const APP_JS = `"use strict";
(function () {
  var cells = function (row, values) {
    row.textContent = "";
    values.forEach(function (v, i) {
      var td = document.createElement("td");
      td.textContent = v == null ? "" : String(v);
      if (i === 1 && row.dataset.kind === "cluster") td.className = v === "connected" ? "up" : "down";
      row.appendChild(td);
    });
  };
  var refresh = function () {
    fetch("/ui/status.json", { credentials: "same-origin", cache: "no-store" }).then(function (res) {
      if (res.status === 401) { location.reload(); return null; }
      return res.ok ? res.json() : null;
    }).then(function (s) {
      if (!s) return;
      document.getElementById("generated").textContent = "as of " + s.generatedAt;
      var body = document.querySelector("#clusters tbody");
      body.textContent = "";
      s.clusters.forEach(function (c) {
        var tr = document.createElement("tr");
        tr.dataset.cluster = c.name;
        tr.dataset.kind = "cluster";
        cells(tr, [c.name, c.connected ? "connected" : c.enrolled ? "offline" : "awaiting-enrollment", c.since, c.lastSeen, c.agentVersion, c.kubernetesVersion, c.replica, c.activeStreams, c.requestsPerSecond]);
        body.appendChild(tr);
      });
      var refusals = document.querySelector("#refusals tbody");
      refusals.textContent = "";
      s.refusals.forEach(function (r) {
        var tr = document.createElement("tr");
        cells(tr, [r.at, r.cluster, r.user, r.code, r.message]);
        refusals.appendChild(tr);
      });
    }).catch(function () {});
  };
  setInterval(refresh, ${STATUS_REFRESH_MS});
})();
`;

const APP_CSS = `body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d1d1f}
header{display:flex;justify-content:space-between;align-items:center}
table{border-collapse:collapse;width:100%;margin-bottom:2rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #ddd;white-space:nowrap}
td:last-child{white-space:normal}
.up{color:#0a7a2f;font-weight:600}.down{color:#b00020;font-weight:600}
.narrow{max-width:36rem}.error{color:#b00020}
textarea{width:100%;font-family:monospace}
small{color:#666;font-weight:normal}
`;
