// The relay's public download routes: the list, the signed list, one binary, the signing key, install.sh.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { Readable } from "node:stream";
import type { Hono } from "hono";
import { DOWNLOADS_PATHS } from "../client/index.ts";
import { NotFound, Unavailable } from "../errors/index.ts";
import type { DownloadCatalog } from "./downloads.ts";
import installScript from "./install.sh" with { type: "text" };

/**
 * Adds, without credentials (binaries and public keys are not secrets, and a CI job has none yet):
 * `GET /v1/downloads/` (JSON list), `GET /v1/downloads/index.jws` (the same, signed; `application/jose`),
 * `GET /v1/downloads/<name>/<os>-<arch>` (the binary, with its length and `x-checksum-sha256`),
 * `GET /.well-known/cluster-connect/downloads-key` (public JWK) and `...downloads-key.pem`, and
 * `GET /install.sh` with this relay's URL and key filled in. Without a catalog (no
 * `--downloads-dir`) each answers 404 saying so; install.sh is still served so that its error says it.
 */
export function registerDownloadRoutes(app: Hono, relay: string, catalog: DownloadCatalog | undefined): void {
  const noDownloads = () => new NotFound("this relay serves no downloads: its admin starts it with --downloads-dir DIR (laid out as 'bun run build:all' writes dist/)");
  const need = (): DownloadCatalog => {
    if (!catalog) throw noDownloads();
    return catalog;
  };
  app.get(DOWNLOADS_PATHS.list, (c) => c.json(need().document));
  app.get(DOWNLOADS_PATHS.list.replace(/\/$/, ""), (c) => c.json(need().document));
  app.get(DOWNLOADS_PATHS.signed, (c) => c.body(need().signed, 200, { "content-type": "application/jose" }));
  app.get(DOWNLOADS_PATHS.publicKey, (c) => c.json({ keys: [need().publicJwk] }));
  app.get(`${DOWNLOADS_PATHS.publicKey}.pem`, (c) => c.body(need().publicPem, 200, { "content-type": "application/x-pem-file" }));
  app.get("/v1/downloads/:name/:platform", async (c) => {
    const [os, arch] = c.req.param("platform").split("-");
    const found = need().fileFor(c.req.param("name"), os ?? "", arch ?? "");
    if (!found) throw new NotFound(`no ${c.req.param("name")} for ${c.req.param("platform")} here; GET ${DOWNLOADS_PATHS.list} lists what the relay serves`);
    const { entry, path } = found;
    // The list was signed at start; a file replaced since then would only fail the client's check.
    if ((await stat(path)).size !== entry.size) {
      throw new Unavailable(`${path} changed since the relay signed its list of downloads; the relay's admin restarts the relay to sign the new files`);
    }
    const body = Readable.toWeb(createReadStream(path, { start: 0, end: entry.size - 1 })) as ReadableStream<Uint8Array>;
    return c.body(body, 200, {
      "content-type": "application/octet-stream",
      "content-length": String(entry.size),
      "content-disposition": `attachment; filename="${entry.name}${entry.os === "windows" ? ".exe" : ""}"`,
      "x-checksum-sha256": entry.sha256,
      "cache-control": "no-cache",
    });
  });
  // The URL goes into a double-quoted shell string: only URL characters that mean nothing to sh.
  const scriptSafe = /^[A-Za-z0-9:/._~%[\]-]+$/.test(relay);
  app.get(DOWNLOADS_PATHS.installScript, (c) => {
    if (!scriptSafe) throw new Unavailable(`the relay's URL ${JSON.stringify(relay)} cannot be written into install.sh; its admin sets --public-url to a plain https URL`);
    // Filled in here, once per request: the script names this relay and embeds its key, so a
    // user who pins nothing still checks the binary against the key that came with the script.
    // Replacer functions: a `$&` or `$'` in a value must stay literal text.
    const script = installScript
      .replace("@ARC_RELAY@", () => relay)
      .replace("@ARC_DOWNLOADS_KEY_PEM@", () => (catalog ? catalog.publicPem.trim() : "@ARC_DOWNLOADS_KEY_PEM@"));
    return c.body(script, 200, { "content-type": "text/x-shellscript; charset=utf-8", "cache-control": "no-cache" });
  });
}
