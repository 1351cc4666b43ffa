// Fetches a GitHub Actions OIDC ID token for an audience from the runner's token endpoint.
import { readJwtExpiry, type TokenCredential } from "./token-source-cache.ts";
import { GITHUB_REQUEST_TIMEOUT_MS } from "./token-source-timeouts.ts";
import { ConfigError } from "../errors/index.ts";

/** Given to a job by the runner only when the workflow grants `permissions: id-token: write`. */
export interface GitHubActionsEnv {
  /** $ACTIONS_ID_TOKEN_REQUEST_URL */
  requestUrl?: string;
  /** $ACTIONS_ID_TOKEN_REQUEST_TOKEN */
  requestToken?: string;
}

export const MISSING_ID_TOKEN_PERMISSION =
  "--token-source github-actions needs `permissions: id-token: write` in the workflow " +
  "(ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set in this job)";

/** Checks the env now, so a workflow without the permission fails at start, not at the first request. */
export function createGitHubActionsFetch(audience: string, env: GitHubActionsEnv): () => Promise<TokenCredential> {
  if (!audience) throw new ConfigError("--audience must not be empty");
  const { requestUrl, requestToken } = env;
  if (!requestUrl || !requestToken) throw new Error(MISSING_ID_TOKEN_PERMISSION);
  let url: URL;
  try {
    url = new URL(requestUrl);
  } catch {
    throw new Error(`ACTIONS_ID_TOKEN_REQUEST_URL is not a URL: ${JSON.stringify(requestUrl.slice(0, 200))}`);
  }
  // The runner's URL already carries ?api-version=...; the audience is one more parameter.
  url.searchParams.set("audience", audience);
  const endpoint = url.toString();

  return async function fetchGitHubIdToken(): Promise<TokenCredential> {
    let response: Response;
    try {
      response = await fetch(endpoint, {
        headers: { authorization: `bearer ${requestToken}`, accept: "application/json" },
        signal: AbortSignal.timeout(GITHUB_REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      throw new Error(`cannot reach the GitHub Actions ID token endpoint ${url.host}: ${(error as Error).message}`, { cause: error });
    }
    const body = await response.text();
    if (!response.ok) {
      throw new Error(`the GitHub Actions ID token endpoint answered ${response.status}: ${body.trim().slice(0, 300)}`);
    }
    let value: unknown;
    try {
      value = (JSON.parse(body) as { value?: unknown }).value;
    } catch {
      throw new Error("the GitHub Actions ID token endpoint answered with something that is not JSON");
    }
    if (typeof value !== "string" || !value) throw new Error("the GitHub Actions ID token endpoint answered without a token (no \"value\")");
    return { token: value, expiresAt: readJwtExpiry(value) };
  };
}
