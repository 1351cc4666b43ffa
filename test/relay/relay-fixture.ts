// A relay's store and built-in issuer in a fresh folder, for the tests of what sits on them.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  builtinIssuerTrust, createBuiltinIssuer, createUserTokenVerifier, loadOrCreateIssuerKeys, type BuiltinIssuer, type Identity,
} from "../../lib/auth/index.ts";
import { openSqliteStore, type RelayStore } from "../../lib/relay/store/index.ts";

export const FIXTURE_ISSUER_URL = "https://relay.test";

export interface RelayFixture {
  dir: string;
  store: RelayStore;
  /** Issues user tokens as `arcrelay token create` does (issuer https://relay.test, audience cluster-connect). */
  issuer: BuiltinIssuer;
  verifyUserToken(token: string): Promise<Identity>;
  /** Removes every grant and cluster, for the next test. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

/** Opens a SQLite store in a new temp folder named after `name`, with the relay's built-in issuer on it. */
export async function openRelayFixture(name: string): Promise<RelayFixture> {
  const dir = await mkdtemp(join(tmpdir(), `arc-${name}-`));
  const store = await openSqliteStore(join(dir, "data"));
  const issuer = createBuiltinIssuer({ issuer: FIXTURE_ISSUER_URL, audience: "cluster-connect", ...(await loadOrCreateIssuerKeys(store)) });
  const verifier = createUserTokenVerifier({ issuers: [builtinIssuerTrust(issuer)] });
  return {
    dir,
    store,
    issuer,
    verifyUserToken: verifier.verifyUserToken,
    async reset() {
      for (const g of await store.listGrants()) await store.removeGrant({ id: g.id });
      for (const c of await store.listClusters()) await store.removeCluster(c.name);
    },
    async close() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
