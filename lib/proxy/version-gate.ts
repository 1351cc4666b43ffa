// Whether this arcproxy is new enough for the relay: asked once at start, answered with the command to run.
import { callRelay, refusalError, type RelayConnection } from "../client/index.ts";
import { ArcError } from "../errors/index.ts";
import { protocol } from "../tunnel/index.ts";
import { printable } from "./terminal-text.ts";

/** The relay needs a newer arcproxy: 426 Upgrade Required, as a Status would say it. */
export class ArcproxyTooOld extends ArcError {
  override readonly code = "ERR_ARC_ARCPROXY_TOO_OLD";
  override readonly status = 426;
  override readonly reason = "BadRequest";
}

/**
 * Compares dotted release versions (`1.4.2`, `v1.10.0`, `1.2.0-rc.1+abc`): numerically part by part,
 * a pre-release below its release and pre-releases by their identifiers (SemVer 2.0.0 section 11),
 * build metadata ignored. Returns -1, 0 or 1.
 */
export function compareVersions(a: string, b: string): number {
  const split = (v: string) => {
    const [core, pre] = v.replace(/^v/, "").split("+")[0]!.split(/-(.*)/s);
    return { parts: core!.split(".").map((p) => Number.parseInt(p, 10) || 0), pre };
  };
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < Math.max(x.parts.length, y.parts.length); i++) {
    const d = (x.parts[i] ?? 0) - (y.parts[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (x.pre === y.pre) return 0;
  if (x.pre === undefined) return 1;
  if (y.pre === undefined) return -1;
  // SemVer 2.0.0 11.4: dot-separated identifiers, numbers numerically and below text, fewer below more.
  const left = x.pre.split(".");
  const right = y.pre.split(".");
  for (let i = 0; i < Math.min(left.length, right.length); i++) {
    const [p, q] = [left[i]!, right[i]!];
    const [pn, qn] = [/^\d+$/.test(p), /^\d+$/.test(q)];
    if (pn && qn && Number(p) !== Number(q)) return Math.sign(Number(p) - Number(q));
    if (pn !== qn) return pn ? -1 : 1;
    if (p !== q) return p < q ? -1 : 1;
  }
  return Math.sign(left.length - right.length);
}

/**
 * Reads the relay's `/.well-known/cluster-connect` and throws ArcproxyTooOld naming the version it
 * needs and `arcproxy update` when `ownVersion` is older than its `minArcproxyVersion`. A build from
 * sources (`dev`) is never refused. Throws the relay's refusal or RelayUnreachable when it cannot be asked.
 */
export async function checkArcproxyVersion(relay: RelayConnection, ownVersion: string): Promise<void> {
  if (ownVersion === "dev") return;
  const answer = await callRelay(relay, { path: protocol.CLIENT_CONFIG_PATH });
  if (answer.status !== 200) throw refusalError(answer.status, answer.json, { relay: relay.url });
  const min = (answer.json as { minArcproxyVersion?: unknown } | undefined)?.minArcproxyVersion;
  if (typeof min === "string" && compareVersions(ownVersion, min) < 0) {
    throw new ArcproxyTooOld(
      `relay ${relay.url.base} needs arcproxy ${printable(min, 64)} or newer; this is ${ownVersion}. Run: arcproxy update` +
        ` (or curl -fsSL ${relay.url.base}/install.sh | sh)`,
    );
  }
}
