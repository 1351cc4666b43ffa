// Turns the relay's refusal (a status and, usually, a Kubernetes Status body) into the right error.
import { errorForStatus, statusMessageOf, type ArcError } from "../errors/index.ts";
import type { RelayUrl } from "./relay-url.ts";

/** Advice for one status: `say` is appended unless the relay's own message already mentions `unless`. */
export interface RefusalAdvice {
  say: string;
  unless?: string;
}

export interface RefusalContext {
  relay: RelayUrl;
  /** What was being done, e.g. `enrolling cluster "prod"`; put before the relay's message. */
  action?: string;
  /** Per HTTP status: what the user should do next. */
  advice?: Partial<Record<number, RefusalAdvice>>;
  /** Said when the relay sent no message of its own; default `HTTP <status>`. */
  fallback?: Partial<Record<number, string>>;
}

/**
 * The ArcError for a refusal: the class that matches `status` (errorForStatus), the relay's own
 * message from a Status body (statusMessageOf), and the advice for that status unless the relay
 * already gave it (its own refusals name the command to run; a fronting proxy's do not). A status
 * with neither a message nor a known meaning asks whether the URL is the relay's.
 */
export function refusalError(status: number, body: unknown, ctx: RefusalContext): ArcError {
  const said = statusMessageOf(body);
  const advice = ctx.advice?.[status];
  const base = said ?? ctx.fallback?.[status] ?? `HTTP ${status}${status >= 500 || status < 400 ? `; is ${ctx.relay.base} the relay's URL?` : ""}`;
  const tail = advice && !(advice.unless && said?.includes(advice.unless)) ? `; ${advice.say}` : "";
  return errorForStatus(status, `relay ${ctx.relay.base}: ${ctx.action ? `${ctx.action}: ` : ""}${base}${tail}`);
}
