// `bun run kube:up -- --dir DIR [--agent-relay URL --agent-cluster NAME --agent-enroll-token T]`
//
// Starts a whole single-node cluster (see cluster.ts), writes DIR/admin.kubeconfig and
// DIR/test-image, and prints `ready` once the node is Ready. With the --agent-* flags it also
// builds the agent image from Dockerfile.agent, installs the agent's Helm chart into the namespace
// cluster-connect and prints `agent ready` once the agent pod runs. Runs until SIGINT or SIGTERM,
// then stops everything it started.
import { defineCommand, runMain } from "citty";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { installAgentChart } from "./agent-install.ts";
import { startKubeCluster } from "./cluster.ts";

/** 128 + the signal's number, as a shell reports a process a signal ended. */
const SIGNAL_EXIT_CODES = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 } as const;

const main = defineCommand({
  meta: { name: "kube-up", description: "Run a whole single-node Kubernetes cluster for local testing" },
  args: {
    dir: { type: "string", required: true, description: "Directory for PKI, data, logs and kubeconfigs" },
    "agent-relay": { type: "string", description: "Install the agent chart, dialling this relay URL" },
    "agent-cluster": { type: "string", description: "The cluster's name at the relay (with --agent-relay)" },
    "agent-enroll-token": { type: "string", description: "Enrollment token from `arcrelay cluster add` (with --agent-relay; default $ARC_ENROLL_TOKEN, which keeps it out of the process list)" },
  },
  async run({ args }) {
    const dir = resolve(args.dir);
    const agent = args["agent-relay"];
    const enrollToken = args["agent-enroll-token"] ?? process.env.ARC_ENROLL_TOKEN;
    if (agent && (!args["agent-cluster"] || !enrollToken)) {
      throw new TypeError("--agent-relay needs --agent-cluster and --agent-enroll-token (or ARC_ENROLL_TOKEN)");
    }
    await mkdir(dir, { recursive: true });
    const log = (line: string) => console.error(line);
    // Persistent handlers (not `once`): `bun run` forwards signals, so each may arrive twice.
    const stopped = new Promise<keyof typeof SIGNAL_EXIT_CODES>((done) => {
      for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => done(sig));
    });
    // A first start builds Kubernetes for minutes: a signal then must stop us now, not once the
    // build is done. What had started is removed by the teardown watchdog startKubeCluster runs,
    // which acts as soon as this process is gone.
    const starting = startKubeCluster({ dir, log });
    const first = await Promise.race([starting, stopped]);
    if (typeof first === "string") {
      log(`[kube] ${first} during start-up; stopping (the teardown watchdog removes whatever had started)`);
      process.exit(SIGNAL_EXIT_CODES[first]);
    }
    const cluster = first;
    try {
      await writeFile(join(dir, "test-image"), `${cluster.node!.testImage}\n`);
      log(`[kube] server:           ${cluster.server}`);
      log(`[kube] admin kubeconfig: ${cluster.adminKubeconfig}`);
      log(`[kube] kubectl:          ${cluster.kubectl}`);
      log(`[kube] test image:       ${cluster.node!.testImage}`);
      console.log("ready");
      let reason: string | undefined;
      if (agent) {
        // Building the image and installing the chart takes a while too: a signal meanwhile stops it.
        const installed = installAgentChart(cluster, { relayUrl: agent, cluster: args["agent-cluster"]!, enrollToken: enrollToken!, log }).then(() => undefined);
        reason = await Promise.race([installed, stopped]);
        if (reason === undefined) console.log("agent ready");
      }
      reason ??= await Promise.race([stopped, cluster.exited.then((msg) => `error: ${msg}`)]);
      log(`[kube] ${reason}; stopping`);
      await cluster.stop();
      log("[kube] stopped");
      process.exit(reason.startsWith("error:") ? 1 : 0);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  },
});

await runMain(main);
