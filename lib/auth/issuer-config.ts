// Reads the YAML file of trusted external OIDC issuers and turns it into the verifier's TrustedIssuers.
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { LineCounter, parseDocument, type Document } from "yaml";
import { createLazyJwksUrl, endpointUrlProblem, type DiscoveryOptions } from "./discovery.ts";
import type { IssuerLogin, TrustedIssuer } from "./verifier.ts";
import { ConfigError } from "../errors/index.ts";

/** One entry of `issuers:` in the config file, validated. */
export interface TrustedIssuerConfig {
  /** Exact `iss` of the tokens, and the base of OIDC discovery. */
  issuer: string;
  audiences: string[];
  /** Claim holding the Kubernetes user name: `sub`, `email`, `preferred_username`, `oid`, ... */
  usernameClaim: string;
  usernamePrefix?: string;
  groupsClaim?: string;
  groupsPrefix?: string;
  /** Default ["RS256"], what Entra ID, Keycloak, Dex and GitHub Actions sign with. */
  algorithms: string[];
  /** Skips discovery and fetches keys from here. */
  jwksUrl?: string;
  /** Absolute path of an extra CA for the issuer's endpoints (relative paths resolve against the config file). */
  caFile?: string;
  /** PEM contents of `caFile`, read by loadIssuerConfig. */
  ca?: string;
  /** Agents only: `relay` fetches this issuer's keys through the relay (the cluster cannot reach the issuer). */
  keysFrom?: "issuer" | "relay";
  /** Relays only: the public client `arcproxy login` uses with this issuer (advertised at /.well-known/cluster-connect). */
  login?: IssuerLogin;
}

const DEFAULT_LOGIN_SCOPES = ["openid", "profile", "email", "offline_access"];

/** Asymmetric JWS algorithms: HMAC or `none` would let anyone holding the public key, or nothing, mint tokens. */
export const ISSUER_ALGORITHMS: readonly string[] = [
  "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519",
];
const DEFAULT_ALGORITHMS = ["RS256"];
const ISSUER_FIELDS = [
  "issuer", "audiences", "usernameClaim", "usernamePrefix", "groupsClaim", "groupsPrefix", "algorithms", "jwksUrl", "caFile",
  "keysFrom", "login",
];
/** A config file is a few issuers; anything this large is the wrong file. */
const MAX_CONFIG_BYTES = 1024 * 1024;
/** Kubernetes reserves `system:` names; an external issuer must not be able to claim them through a prefix. */
const RESERVED_PREFIX = /^system:/;

type Path = (string | number)[];

/** Reads and validates the issuer config; every error names the file, the line and the field. */
export async function loadIssuerConfig(path: string): Promise<TrustedIssuerConfig[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${path}: cannot read the issuer config: ${(error as Error).message}`, { cause: error });
  }
  if (text.length > MAX_CONFIG_BYTES) throw new ConfigError(`${path}: larger than ${MAX_CONFIG_BYTES / 1024} KiB; is this the issuer config?`);
  const configs = parseIssuerConfig(text, path);
  for (const [i, config] of configs.entries()) {
    if (!config.caFile) continue;
    config.caFile = resolve(dirname(path), config.caFile);
    config.ca = await readCaFile(config.caFile, `${path}: issuers[${i}].caFile`);
  }
  return configs;
}

/** Validates the YAML text of an issuer config; `source` names it in errors. `caFile` is not read here. */
export function parseIssuerConfig(text: string, source: string): TrustedIssuerConfig[] {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const syntaxError = doc.errors[0];
  if (syntaxError) {
    const { line, col } = lineCounter.linePos(syntaxError.pos[0]);
    throw new ConfigError(`${source}:${line}:${col}: not valid YAML: ${syntaxError.message}`);
  }
  const fail = (at: Path, message: string): never => {
    const line = lineOf(doc, lineCounter, at);
    throw new ConfigError(`${source}${line ? `:${line}` : ""}: ${formatPath(at)}: ${message}`);
  };

  const root: unknown = doc.toJS({ maxAliasCount: 50 });
  if (!isRecord(root)) fail([], "the file must be a mapping with an `issuers` list");
  const top = root as Record<string, unknown>;
  for (const key of Object.keys(top)) if (key !== "issuers") fail([key], "unknown field; the file holds only `issuers`");
  if (!Array.isArray(top.issuers) || top.issuers.length === 0) fail(["issuers"], "must be a non-empty list of issuers");

  const seen = new Map<string, number>();
  return (top.issuers as unknown[]).map((entry, i) => {
    const config = parseIssuerEntry(entry, ["issuers", i], fail);
    const first = seen.get(config.issuer);
    if (first !== undefined) fail(["issuers", i, "issuer"], `${config.issuer} is already listed as issuers[${first}]`);
    seen.set(config.issuer, i);
    return config;
  });
}

function parseIssuerEntry(entry: unknown, at: Path, fail: (at: Path, message: string) => never): TrustedIssuerConfig {
  if (!isRecord(entry)) return fail(at, "must be a mapping with issuer, audiences, usernameClaim, ...");
  for (const key of Object.keys(entry)) {
    if (!ISSUER_FIELDS.includes(key)) fail([...at, key], `unknown field; known fields are ${ISSUER_FIELDS.join(", ")}`);
  }
  const text = (field: string, opts: { required?: boolean; allowEmpty?: boolean } = {}): string | undefined => {
    const value = entry[field];
    if (value === undefined || value === null) return opts.required ? fail([...at, field], "is required") : undefined;
    if (typeof value !== "string") return fail([...at, field], "must be a string");
    if (value.length === 0 && !opts.allowEmpty) return fail([...at, field], "must not be empty");
    return value;
  };
  const list = (field: string, fallback?: string[]): string[] => {
    const value = entry[field] ?? fallback;
    if (!Array.isArray(value) || value.length === 0) return fail([...at, field], "must be a non-empty list of strings");
    value.forEach((item, j) => {
      if (typeof item !== "string" || item.length === 0) fail([...at, field, j], "must be a non-empty string");
    });
    return value as string[];
  };
  const url = (field: string, required: boolean): string | undefined => {
    const value = text(field, { required });
    if (value === undefined) return undefined;
    const problem = endpointUrlProblem(value) ?? (new URL(value).search ? `${value} must not carry a query` : undefined);
    return problem ? fail([...at, field], problem) : value;
  };
  const prefix = (field: string): string | undefined => {
    const value = text(field, { allowEmpty: true });
    if (value !== undefined && RESERVED_PREFIX.test(value)) fail([...at, field], `must not start with "system:" (reserved by Kubernetes)`);
    return value;
  };

  const issuer = url("issuer", true)!;
  const algorithms = list("algorithms", DEFAULT_ALGORITHMS);
  algorithms.forEach((alg, j) => {
    if (!ISSUER_ALGORITHMS.includes(alg)) {
      fail([...at, "algorithms", j], `${alg} is not allowed; use asymmetric algorithms: ${ISSUER_ALGORITHMS.join(", ")}`);
    }
  });
  const groupsClaim = text("groupsClaim");
  const groupsPrefix = prefix("groupsPrefix");
  if (groupsPrefix !== undefined && groupsClaim === undefined) fail([...at, "groupsPrefix"], "needs groupsClaim");
  const keysFrom = text("keysFrom");
  if (keysFrom !== undefined && keysFrom !== "issuer" && keysFrom !== "relay") fail([...at, "keysFrom"], "must be issuer or relay");
  const audiences = list("audiences");
  const login = parseLogin(entry.login, [...at, "login"], audiences, fail);
  return dropUndefined({
    login,
    keysFrom: keysFrom as "issuer" | "relay" | undefined,
    issuer,
    audiences,
    usernameClaim: text("usernameClaim", { required: true })!,
    usernamePrefix: prefix("usernamePrefix"),
    groupsClaim,
    groupsPrefix,
    algorithms,
    jwksUrl: url("jwksUrl", false),
    caFile: text("caFile"),
  });
}

/** `login: {clientId, scopes}`: a public client (no secret: PKCE protects the code), one of the audiences. */
function parseLogin(value: unknown, at: Path, audiences: string[], fail: (at: Path, message: string) => never): IssuerLogin | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isRecord(value)) return fail(at, "must be a mapping with clientId (and scopes)");
  for (const key of Object.keys(value)) {
    if (key !== "clientId" && key !== "scopes") fail([...at, key], "unknown field; known fields are clientId, scopes");
  }
  const clientId = value.clientId;
  if (typeof clientId !== "string" || clientId.length === 0) return fail([...at, "clientId"], "is required");
  if (!audiences.includes(clientId)) {
    fail([...at, "clientId"], `must be one of audiences (${audiences.join(", ")}): an ID token names its client as its audience`);
  }
  const scopes = value.scopes ?? DEFAULT_LOGIN_SCOPES;
  if (!Array.isArray(scopes) || scopes.some((s) => typeof s !== "string" || s.length === 0) || !scopes.includes("openid")) {
    fail([...at, "scopes"], 'must be a list of scopes that includes "openid"');
  }
  return { clientId, scopes: scopes as string[] };
}

/**
 * The verifier's view of the configured issuers. Without `jwksUrl`, keys are found by OIDC discovery
 * on the first token of that issuer, so an issuer that is down at start fails only its own tokens.
 */
export function resolveTrustedIssuers(
  configs: TrustedIssuerConfig[],
  opts: Pick<DiscoveryOptions, "fetch" | "timeoutMs"> & { retryAfterMs?: number } = {},
): TrustedIssuer[] {
  return configs.map((config) => dropUndefined({
    issuer: config.issuer,
    audiences: config.audiences,
    jwks: config.jwksUrl
      ? { url: config.jwksUrl }
      : { discover: createLazyJwksUrl(config.issuer, { ...opts, ...(config.ca ? { tlsCa: config.ca } : {}) }) },
    usernameClaim: config.usernameClaim,
    usernamePrefix: config.usernamePrefix,
    groupsClaim: config.groupsClaim,
    groupsPrefix: config.groupsPrefix,
    algorithms: config.algorithms,
    tlsCa: config.ca,
    keysFrom: config.keysFrom,
    login: config.login,
  }));
}

async function readCaFile(path: string, field: string): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${field}: cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) throw new ConfigError(`${field}: ${path} holds no PEM certificate`);
  return pem;
}

function lineOf(doc: Document, lineCounter: LineCounter, at: Path): number | undefined {
  // Points at the deepest node that exists: an unknown or wrong value, or the mapping missing a field.
  for (let depth = at.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(at.slice(0, depth), true);
    const start = (node as { range?: [number, number, number] } | null | undefined)?.range?.[0];
    if (typeof start === "number") return lineCounter.linePos(start).line;
  }
  return undefined;
}

function formatPath(at: Path): string {
  if (at.length === 0) return "top level";
  return at.map((part, i) => (typeof part === "number" ? `[${part}]` : i === 0 ? part : `.${part}`)).join("");
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function dropUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
