// The sending half of a forward between replicas, against replicas that are not there.
import { expect, test } from "bun:test";
import http from "node:http";
import net from "node:net";
import { createSelfSignedCertificate } from "../../lib/http/index.ts";
import { ReplicaMissed, forwardToReplica } from "../../lib/relay/replica-forward.ts";
import { freePorts } from "../cluster/control-plane.ts";

/** A loopback port nothing listens on (any more). */
const closedPort = async () => (await freePorts(1))[0]!;

test("a replica that refuses the connection is a miss (nothing was sent), and the message names it without its internal address", async () => {
  const port = await closedPort();
  const { certPem } = await createSelfSignedCertificate({ commonName: "arcrelay replica relay-7f9c", hosts: ["127.0.0.1"] });
  const holder = { replicaId: "relay-7f9c", internalUrl: `https://127.0.0.1:${port}`, certificatePem: certPem, expiresAt: new Date(Date.now() + 60_000) };
  const server = http.createServer(async (req, res) => {
    const error = await forwardToReplica({ holder, secret: "s", cluster: "prod", requestId: "req-1", url: req.url ?? "/", headers: {} }, req, res).then(() => undefined, (e: unknown) => e);
    res.end(JSON.stringify({ missed: error instanceof ReplicaMissed, unreachable: (error as ReplicaMissed).unreachable, message: (error as Error).message }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const answer = (await (await fetch(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1/clusters/prod/k8s/api`)).json()) as { missed: boolean; unreachable: boolean; message: string };
    expect(answer).toMatchObject({ missed: true, unreachable: true });
    expect(answer.message).toContain('relay replica "relay-7f9c"');
    expect(answer.message).not.toContain(String(port));
  } finally {
    server.close();
  }
});
