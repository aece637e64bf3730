/**
 * `deno task testbed`: starts the test bed in the foreground for manual work —
 * etcd, kube-apiserver and kube-controller-manager v1.35 with the CRD and RBAC
 * installed and simulated nodes — prints the kubeconfigs, and tears everything
 * down on Ctrl-C.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { z } from "zod";
import {
  applyManifests,
  KubeletSimulator,
  MANIFESTS,
  startTestbed,
  waitForCrd,
} from "../testbed/mod.ts";
import { GROUP, PLURAL } from "../api/mod.ts";
import * as k8s from "@kubernetes/client-node";
import { programArgs } from "../config/mod.ts";

const USAGE = `usage: deno task testbed [--nodes N] [--node-cpu MILLICORES]

Starts a real control plane on free loopback ports, installs the PodAllocation
CRD and RBAC, registers N simulated nodes (default 1, named node-1..node-N) whose
pods the kubelet simulator runs, prints kubeconfig paths, and stops on Ctrl-C.`;

const optionsSchema = z.object({
  nodes: z.coerce.number().int().min(0).max(100),
  nodeCpu: z.coerce.number().int().min(1).max(1_000_000),
});

if (import.meta.main) {
  let options: z.infer<typeof optionsSchema>;
  try {
    const { values } = parseArgs({
      args: programArgs(),
      options: {
        nodes: { type: "string", default: "1" },
        "node-cpu": { type: "string", default: "4000" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      console.log(USAGE);
      Deno.exit(0);
    }
    const parsed = optionsSchema.safeParse({ nodes: values.nodes, nodeCpu: values["node-cpu"] });
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const flag = issue.path[0] === "nodes" ? "--nodes" : "--node-cpu";
      console.error(
        `testbed: ${flag} ${issue.message}, got ${
          JSON.stringify(issue.path[0] === "nodes" ? values.nodes : values["node-cpu"])
        }`,
      );
      Deno.exit(2);
    }
    options = parsed.data;
  } catch (error) {
    console.error(`testbed: ${(error as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }

  const testbed = await startTestbed({ log: (line) => console.error(line) });
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(testbed.identities.admin.kubeconfig);
  const simulators: KubeletSimulator[] = [];
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.error("\nstopping the test bed ...");
    for (const s of simulators) await s.stop();
    await testbed.stop();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  try {
    await applyManifests(kc, [MANIFESTS.crd, ...MANIFESTS.rbac]);
    await waitForCrd(kc, `${PLURAL}.${GROUP}`);
    for (let i = 1; i <= options.nodes; i++) {
      const simulator = new KubeletSimulator(kc, {
        nodeName: `node-${i}`,
        allocatableMillicores: options.nodeCpu,
      });
      await simulator.start();
      simulators.push(simulator);
    }
  } catch (error) {
    console.error(`testbed: set-up failed: ${(error as Error).message}`);
    await stop();
  }
  const { identities } = testbed;
  console.log(`test bed ready in ${(testbed.startupMs / 1000).toFixed(1)} s at ${testbed.url}
  admin (token):             ${identities.admin.kubeconfig}
  admin (client cert):       ${identities.certAdmin.kubeconfig}
  agent ServiceAccount:      ${identities.agent.kubeconfig}
  controller ServiceAccount: ${identities.controller.kubeconfig}
  nodes: ${simulators.map((s) => s.nodeName).join(", ") || "none"} (simulated kubelets)

  export KUBECONFIG=${identities.admin.kubeconfig}
  kubectl get nodes; kubectl get pa -A

Ctrl-C stops everything and removes ${testbed.dir}`);
}
