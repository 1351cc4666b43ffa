// Fetches an issuer's JWKS for jose, turning every way that can fail into one error kind.
import { rootCertificates } from "node:tls";

/** Marks a failure to get the JWKS document itself, as opposed to a bad token. */
export class JwksFetchError extends Error {
  override name = "JwksFetchError";
}

/**
 * The fetch jose uses for JWKS URLs: trusts the `tlsCa` PEMs besides the system roots and turns every
 * failure (network, timeout, status, not a JWKS) into JwksFetchError, so a down issuer reads
 * differently from a bad token.
 */
export function createJwksFetch(
  fetchImpl: typeof fetch,
  tlsCa: (string | undefined)[],
  timeoutMs: number,
  requestHeaders?: () => Promise<Record<string, string>>,
) {
  const extraCas = tlsCa.filter((ca): ca is string => Boolean(ca));
  const tls = extraCas.length > 0 ? { ca: [...rootCertificates, ...extraCas] } : undefined;
  return async function fetchJwks(url: string, init: RequestInit & { signal: AbortSignal }): Promise<Response> {
    let response: Response;
    try {
      if (requestHeaders) init = { ...init, headers: { ...(init.headers as Record<string, string>), ...(await requestHeaders()) } };
      response = await fetchImpl(url, tls ? { ...init, tls } : init);
    } catch (error) {
      const reason = (error as Error)?.name === "TimeoutError" || init.signal.aborted
        ? `no answer from ${url} within ${timeoutMs} ms`
        : `${url}: ${(error as Error)?.message ?? String(error)}`;
      throw new JwksFetchError(reason, { cause: error });
    }
    if (response.status !== 200) {
      await response.body?.cancel().catch(() => {});
      throw new JwksFetchError(`${url} answered HTTP ${response.status}`);
    }
    let text: string;
    let body: unknown;
    try {
      text = await response.text();
      body = JSON.parse(text);
    } catch (error) {
      throw new JwksFetchError(`${url} did not return JSON`, { cause: error });
    }
    const keys = (body as { keys?: unknown } | null)?.keys;
    if (!Array.isArray(keys) || !keys.every((k) => k !== null && typeof k === "object")) {
      throw new JwksFetchError(`${url} did not return a JSON Web Key Set`);
    }
    return new Response(text, { status: 200, headers: { "content-type": "application/json" } });
  };
}
