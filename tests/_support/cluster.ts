/**
 * The test bed as most integration tests need it: the control plane, the CRD
 * and RBAC installed, some namespaces, and one simulated node `node-a`.
 */
import * as k8s from "@kubernetes/client-node";
import { GROUP, PLURAL } from "../../src/api/mod.ts";
import {
  applyManifests,
  KubeletSimulator,
  MANIFESTS,
  startTestbed,
  type Testbed,
  waitForCrd,
} from "../../src/testbed/mod.ts";
import { kubeConfig } from "../k8s/_helpers.ts";

/** A running test cluster. */
export interface Cluster {
  /** The control plane. */
  testbed: Testbed;
  /** Admin credentials. */
  admin: k8s.KubeConfig;
  /** Core API as admin. */
  core: k8s.CoreV1Api;
  /** Custom objects API as admin. */
  custom: k8s.CustomObjectsApi;
  /** The kubelet simulator of `node-a`. */
  simulator: KubeletSimulator;
  /** Stops the simulator and the control plane. */
  stop(): Promise<void>;
}

/** Starts the cluster: `namespaces` maps each namespace to create to its labels. */
export async function startCluster(
  options: { nodeCpu?: number; namespaces?: Record<string, Record<string, string>> } = {},
): Promise<Cluster> {
  const testbed = await startTestbed();
  const admin = kubeConfig(testbed.identities.admin.kubeconfig);
  const core = admin.makeApiClient(k8s.CoreV1Api);
  const simulator = new KubeletSimulator(admin, {
    nodeName: "node-a",
    allocatableMillicores: options.nodeCpu ?? 4000,
  });
  const stop = async () => {
    await simulator.stop();
    await testbed.stop();
  };
  try {
    await applyManifests(admin, [MANIFESTS.crd, ...MANIFESTS.rbac]);
    await waitForCrd(admin, `${PLURAL}.${GROUP}`);
    for (const [name, labels] of Object.entries(options.namespaces ?? {})) {
      await core.createNamespace({ body: { metadata: { name, labels } } });
    }
    await simulator.start();
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    testbed,
    admin,
    core,
    custom: admin.makeApiClient(k8s.CustomObjectsApi),
    simulator,
    stop,
  };
}
