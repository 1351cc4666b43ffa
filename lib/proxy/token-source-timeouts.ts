// Every interval and timeout of the token sources, each with its reason.

/** A token is replaced this long before its expiry, so no request carries one that dies in flight. */
export const REFRESH_BEFORE_EXPIRY_MS = 60_000;
/** A token living under 90 s would be stale at once by the rule above: it is reused for half its life, at most this long. */
export const SHORT_TOKEN_MIN_REUSE_MS = 30_000;
/** How long a token whose expiry is unknown (not a JWT, no expirationTimestamp) is reused before asking again. */
export const UNKNOWN_EXPIRY_TTL_MS = 5 * 60_000;
/** After a failed refresh that fell back to a still-valid token, wait this long before trying again. */
export const RETRY_AFTER_FAILURE_MS = 5_000;
/** A token file is stat()ed at most this often: every request asks, and a stat per request is waste. */
export const FILE_CHECK_INTERVAL_MS = 1_000;
/** Default limit for one run of --token-command (az, gcloud and vault can be slow on a cold cache). */
export const COMMAND_TIMEOUT_MS = 30_000;
/** Limit for one request to the GitHub Actions ID token endpoint. */
export const GITHUB_REQUEST_TIMEOUT_MS = 10_000;
