// Which of the relay's refusals reached nothing beyond it, said to the client in one header.
import type { ServerResponse } from "node:http";
import { AgentNotConnected, ShuttingDown } from "../errors/index.ts";
import { protocol } from "../tunnel/index.ts";

/**
 * Marks `res` with x-arc-not-forwarded when `error` is a refusal that no agent or API server saw
 * (the relay draining, no tunnel, a stream the agent refused): arcproxy sends only those again.
 * Call before the Status is written; does nothing once the head is sent.
 */
export function markNotForwarded(res: ServerResponse, error: unknown): void {
  if (res.headersSent) return;
  if (error instanceof AgentNotConnected || error instanceof ShuttingDown) res.setHeader(protocol.NOT_FORWARDED_HEADER, "true");
}
