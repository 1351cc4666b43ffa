// A real PostgreSQL server for the tests, from Debian's packages, in a folder of its own on loopback.
import { chown, mkdtemp, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SQL } from "bun";
import { waitFor } from "./wait-for.ts";

export interface RunningPostgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` */
  adminUrl: string;
  /** A new empty database; resolves with its URL. */
  createDatabase(): Promise<{ url: string; drop(): Promise<void> }>;
  stop(): Promise<void>;
}

/** Debian 12's PostgreSQL 15 (package postgresql). */
const BIN = "/usr/lib/postgresql/15/bin";

/**
 * initdb in a temp folder (trust authentication: only loopback, only this test), then the server
 * on a free loopback port, run as the `postgres` user (PostgreSQL refuses to run as root).
 * Resolves once it accepts connections (30 s bound). Throws naming the package when it is missing.
 */
export async function startPostgres(): Promise<RunningPostgres> {
  if (!existsSync(join(BIN, "postgres"))) throw new Error(`PostgreSQL is not installed (${BIN}/postgres): apt-get install postgresql (.ci/run does)`);
  const dir = await mkdtemp(join(tmpdir(), "arc-pg-"));
  const uid = Number(Bun.spawnSync(["id", "-u", "postgres"]).stdout.toString().trim());
  const gid = Number(Bun.spawnSync(["id", "-g", "postgres"]).stdout.toString().trim());
  await chown(dir, uid, gid);
  const asPostgres = (cmd: string[]) => ["runuser", "-u", "postgres", "--", ...cmd];
  const init = Bun.spawnSync(asPostgres([join(BIN, "initdb"), "-D", join(dir, "data"), "--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]), { stderr: "pipe", stdout: "pipe" });
  if (init.exitCode !== 0) throw new Error(`initdb failed: ${init.stderr.toString()}`);
  const port = await freePort();
  const server = Bun.spawn(asPostgres([join(BIN, "postgres"), "-D", join(dir, "data"), "-p", String(port), "-k", dir,
    "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]), { stdout: "ignore", stderr: "pipe" });
  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
  await waitFor("PostgreSQL to accept connections", async () => {
    if (server.exitCode !== null) throw new Error(`postgres exited (${server.exitCode}): ${await new Response(server.stderr).text()}`);
    const probe = new SQL(adminUrl, { max: 1, connectionTimeout: 2 });
    try {
      await probe`SELECT 1`;
      return true;
    } catch {
      return false; // not listening yet
    } finally {
      await probe.close();
    }
  }, 30_000);
  const admin = new SQL(adminUrl, { max: 2 });
  let n = 0;
  return {
    adminUrl,
    async createDatabase() {
      const name = `arc_test_${process.pid}_${++n}`;
      await admin.unsafe(`CREATE DATABASE ${name}`);
      return {
        url: `postgres://postgres@127.0.0.1:${port}/${name}`,
        drop: async () => {
          await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        },
      };
    },
    async stop() {
      await admin.close();
      // To the postmaster itself (runuser does not pass SIGINT on): "fast" shutdown.
      const pid = Number((await Bun.file(join(dir, "data", "postmaster.pid")).text()).split("\n")[0]);
      process.kill(pid, "SIGINT");
      await server.exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function freePort(): Promise<number> {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = server;
  server.stop(true);
  return port;
}
