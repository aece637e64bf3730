// deno-lint-ignore-file no-explicit-any -- PodAllocations are read as loose JSON
/**
 * One simulated node for agent tests: the test bed with the CRD and RBAC, a
 * namespace `shop` opted in, a kubelet simulator for `node-a`, and a cgroup v2
 * fixture tree whose containers' counters advance in real time at rates the
 * test sets.
 */
import * as k8s from "@kubernetes/client-node";
import { GROUP, PLURAL, VERSION } from "../../src/api/mod.ts";
import { bareContainerID } from "../../src/cgroup/mod.ts";
import { MANAGED_LABEL } from "../../src/controller/mod.ts";
import type { Testbed } from "../../src/testbed/mod.ts";
import { type Cluster, startCluster } from "../_support/cluster.ts";
import { CgroupFixture } from "../cgroup/_fixtures.ts";
import { eventually } from "../k8s/_helpers.ts";

/** CPU rates of one container, millicores; `noise` is a ± fraction applied to usage. */
export interface Load {
  usage: number;
  throttled: number;
  noise?: number;
}

/** The namespace every lab pod lives in. */
export const NS = "shop";

/** A millicore value from a CPU quantity such as `750m` or `2`. */
export function millicores(q: string): number {
  return q.endsWith("m") ? Number(q.slice(0, -1)) : Number(q) * 1000;
}

/** A node with a real API server and a fake-but-faithful cgroup tree. */
export class NodeLab {
  readonly load = new Map<string, Load>();
  #seed = 11;
  #ticker: ReturnType<typeof setInterval>;

  readonly testbed: Testbed;
  readonly core: k8s.CoreV1Api;
  readonly custom: k8s.CustomObjectsApi;

  private constructor(readonly cluster: Cluster, readonly fixture: CgroupFixture) {
    this.testbed = cluster.testbed;
    this.core = cluster.core;
    this.custom = cluster.custom;
    this.#ticker = setInterval(() => {
      for (const [id, r] of this.load) {
        const jitter = 1 + (this.#random() - 0.5) * 2 * (r.noise ?? 0);
        this.fixture.advance(id, {
          usageNanos: r.usage * jitter * 100_000, // millicores × 100 ms
          throttledNanos: r.throttled * 100_000,
          periods: 1,
          throttledPeriods: r.throttled > 0 ? 1 : 0,
        });
      }
    }, 100);
  }

  /** Starts the test bed and the node (allocatable `nodeCpu` millicores). */
  static async start(nodeCpu: number): Promise<NodeLab> {
    const cluster = await startCluster({
      nodeCpu,
      namespaces: { [NS]: { [MANAGED_LABEL]: "true" } },
    });
    return new NodeLab(cluster, CgroupFixture.create("v2-systemd"));
  }

  /** The PodAllocation of pod `name` in `shop`, or undefined. */
  async pa(name: string): Promise<any | undefined> {
    try {
      return await this.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        name,
      });
    } catch {
      return undefined;
    }
  }

  /** Creates a pod on node-a, waits until it runs, lays out its cgroups; returns its container ids. */
  async runPod(body: k8s.V1Pod, qos: "burstable" | "guaranteed" = "burstable"): Promise<string[]> {
    const name = body.metadata!.name!;
    await this.core.createNamespacedPod({ namespace: NS, body });
    const pod = await eventually(`${name} running`, async () => {
      const p = await this.core.readNamespacedPod({ name, namespace: NS });
      return p.status?.phase === "Running" ? p : undefined;
    });
    const ids = pod.status!.containerStatuses!.map((s) => bareContainerID(s.containerID!));
    this.fixture.addPod({
      uid: pod.metadata!.uid!,
      qos,
      containers: ids.map((id) => ({ id, shares: 256, quotaMicros: 100_000 })),
    });
    return ids;
  }

  /** Stops everything and removes the fixture tree. */
  async stop(): Promise<void> {
    clearInterval(this.#ticker);
    await this.cluster.stop();
    this.fixture.cleanup();
  }

  #random(): number {
    this.#seed = (this.#seed * 1103515245 + 12345) % 2147483648;
    return this.#seed / 2147483648;
  }
}
