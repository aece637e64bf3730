/**
 * A kubelet simulator for tests: without a kubelet nothing writes pod status,
 * so this plays one node's kubelet. It registers a Node with allocatable CPU,
 * marks the pods bound to it Running with `containerStatuses[].resources`,
 * `allocatedResources` and `observedGeneration`, and answers resizes as a real
 * kubelet would: applied, or `PodResizePending` (Deferred / Infeasible), or
 * `PodResizeInProgress` (Error), as the test chooses per pod.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import {
  Informer,
  kubeSource,
  makeApiClient,
  MERGE_PATCH,
  plainList,
  retryOnConflict,
  statusCode,
  toPlain,
} from "../k8s/mod.ts";

/** How the simulated kubelet answers a resize. */
export type ResizeResponse = "accept" | "deferred" | "infeasible" | "error";

/** Options of the simulator. */
export interface KubeletSimulatorOptions {
  /** The node's name. */
  nodeName: string;
  /** Allocatable CPU, millicores (default 4000). */
  allocatableMillicores?: number;
  /** Answer to resizes of pods without a per-pod choice (default accept). */
  defaultResponse?: ResizeResponse;
  /** Pod resync period, milliseconds (default 2000). */
  resyncMs?: number;
}

type Resources = { requests?: Record<string, string>; limits?: Record<string, string> };

/** Simulates one node's kubelet. */
export class KubeletSimulator {
  readonly nodeName: string;
  readonly #kc: k8s.KubeConfig;
  readonly #core: k8s.CoreV1Api;
  readonly #options: Required<KubeletSimulatorOptions>;
  readonly #responses = new Map<string, ResizeResponse>();
  readonly #queue = new Set<string>();
  #informer: Informer<k8s.V1Pod> | null = null;
  #draining: Promise<void> | null = null;
  /** Resizes this simulator has answered, per pod key, in order. */
  readonly answered = new Map<string, ResizeResponse[]>();

  /** Creates the simulator; call {@link KubeletSimulator.start}. */
  constructor(kc: k8s.KubeConfig, options: KubeletSimulatorOptions) {
    this.#kc = kc;
    this.#core = makeApiClient(kc, k8s.CoreV1Api);
    this.nodeName = options.nodeName;
    this.#options = {
      allocatableMillicores: 4000,
      defaultResponse: "accept",
      resyncMs: 2000,
      ...options,
    };
  }

  /** Chooses how resizes of one pod are answered from now on. */
  setResizeResponse(namespace: string, name: string, response: ResizeResponse): void {
    this.#responses.set(`${namespace}/${name}`, response);
    this.#enqueue(`${namespace}/${name}`);
  }

  /** Registers the Node (idempotent) and starts serving its pods. */
  async start(): Promise<void> {
    await this.#registerNode();
    const kc = this.#kc;
    const fieldSelector = `spec.nodeName=${this.nodeName}`;
    const core = this.#core;
    this.#informer = new Informer<k8s.V1Pod>(
      kubeSource<k8s.V1Pod>(kc, {
        path: "/api/v1/pods",
        fieldSelector,
        list: plainList(() => core.listPodForAllNamespaces({ fieldSelector })),
      }),
      {
        name: `kubelet-sim/${this.nodeName}`,
        resyncMs: this.#options.resyncMs,
        backoffInitialMs: 100,
        backoffMaxMs: 2000,
      },
    );
    this.#informer.subscribe((event) => {
      if (event.type !== "deleted") {
        this.#enqueue(`${event.object.metadata!.namespace}/${event.object.metadata!.name}`);
      }
    });
    this.#informer.start();
    await this.#informer.synced();
  }

  /** Stops serving. */
  async stop(): Promise<void> {
    await this.#informer?.stop();
    await this.#draining;
  }

  async #registerNode(): Promise<void> {
    const cpu = `${this.#options.allocatableMillicores}m`;
    try {
      await this.#core.createNode({
        body: {
          metadata: {
            name: this.nodeName,
            labels: { "kubernetes.io/hostname": this.nodeName, "kubernetes.io/os": "linux" },
          },
        },
      });
    } catch (error) {
      if (statusCode(error) !== 409) throw error;
    }
    await retryOnConflict(async () => {
      const node = toPlain(await this.#core.readNode({ name: this.nodeName }));
      const now = new Date().toISOString();
      node.status = {
        ...node.status,
        capacity: { cpu, memory: "16Gi", pods: "110" },
        allocatable: { cpu, memory: "16Gi", pods: "110" },
        conditions: [{
          type: "Ready",
          status: "True",
          reason: "KubeletReady",
          message: "simulated",
          lastHeartbeatTime: now as unknown as Date,
          lastTransitionTime: now as unknown as Date,
        }],
        nodeInfo: {
          architecture: "amd64",
          bootID: "",
          containerRuntimeVersion: "containerd://2.0.0",
          kernelVersion: "",
          kubeProxyVersion: "",
          kubeletVersion: "v1.35.4",
          machineID: "",
          operatingSystem: "linux",
          osImage: "mbcas kubelet simulator",
          systemUUID: "",
        },
      };
      await this.#core.patchNodeStatus(
        {
          name: this.nodeName,
          body: {
            metadata: { resourceVersion: node.metadata?.resourceVersion },
            status: node.status,
          },
        },
        MERGE_PATCH,
      );
    });
  }

  #enqueue(key: string): void {
    this.#queue.add(key);
    this.#draining ??= this.#drain().finally(() => (this.#draining = null));
  }

  async #drain(): Promise<void> {
    while (this.#queue.size > 0) {
      const [key] = this.#queue;
      this.#queue.delete(key);
      try {
        await this.#reconcile(key);
      } catch (error) {
        // 404: the pod is gone. Connection errors: the API server is restarting; the resync retries.
        const quiet = statusCode(error) === 404 ||
          /ECONNREFUSED|ECONNRESET|socket hang up|fetch failed|Connection refused/.test(
            String(error),
          );
        if (!quiet) {
          console.error(`kubelet-sim ${this.nodeName}: ${key}: ${String(error).slice(0, 300)}`);
        }
      }
    }
  }

  async #reconcile(key: string): Promise<void> {
    const [namespace, name] = key.split("/");
    await retryOnConflict(async () => {
      const pod = toPlain(await this.#core.readNamespacedPod({ name, namespace }));
      if (pod.spec?.nodeName !== this.nodeName) return;
      if (pod.metadata?.deletionTimestamp) return;
      const response = this.#responses.get(key) ?? this.#options.defaultResponse;
      const next = this.#desiredStatus(key, pod, response);
      if (next === null) return;
      // A merge patch carrying the resourceVersion: optimistic concurrency without re-serialising dates.
      await this.#core.patchNamespacedPodStatus(
        {
          name,
          namespace,
          body: { metadata: { resourceVersion: pod.metadata?.resourceVersion }, status: next },
        },
        MERGE_PATCH,
      );
    });
  }

  /** The status this kubelet would write now, or null when nothing changes. */
  #desiredStatus(
    key: string,
    pod: k8s.V1Pod,
    response: ResizeResponse,
  ): k8s.V1PodStatus | null {
    const status = { ...(pod.status ?? {}) };
    const generation = pod.metadata?.generation ?? 1;
    const containers = pod.spec?.containers ?? [];
    const specResources = (c: k8s.V1Container): Resources => plainResources(c.resources);
    if (
      status.phase !== "Running" || (status.containerStatuses ?? []).length !== containers.length
    ) {
      const now = new Date().toISOString() as unknown as Date;
      status.phase = "Running";
      status.hostIP = "127.0.0.1";
      status.podIP = `10.244.0.${1 + (hash(key) % 250)}`;
      status.startTime = now;
      status.conditions = ["PodScheduled", "Initialized", "ContainersReady", "Ready"].map((
        type,
      ) => ({
        type,
        status: "True",
        lastTransitionTime: now,
      }));
      status.containerStatuses = containers.map((c) => ({
        name: c.name,
        image: c.image ?? "",
        imageID: `sha256:${hex(`${c.image}`)}`,
        containerID: `containerd://${containerID(pod, c.name)}`,
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: now } },
        allocatedResources: specResources(c).requests,
        resources: specResources(c),
      }));
      status.observedGeneration = generation;
      return status;
    }
    const differs = resizeWanted(pod);
    const conditions = (status.conditions ?? []).filter((c) =>
      c.type !== "PodResizePending" && c.type !== "PodResizeInProgress"
    );
    if (!differs) {
      if (
        conditions.length === (status.conditions ?? []).length &&
        status.observedGeneration === generation
      ) return null;
      return { ...status, conditions, observedGeneration: generation };
    }
    const now = new Date().toISOString() as unknown as Date;
    const condition = (type: string, reason: string, message: string): k8s.V1PodCondition => ({
      type,
      status: "True",
      reason,
      message,
      lastTransitionTime: now,
      observedGeneration: generation,
    } as k8s.V1PodCondition);
    let next: k8s.V1PodStatus;
    switch (response) {
      case "accept":
        next = {
          ...status,
          conditions,
          observedGeneration: generation,
          containerStatuses: status.containerStatuses!.map((cs) => {
            const c = containers.find((x) => x.name === cs.name)!;
            return {
              ...cs,
              resources: specResources(c),
              allocatedResources: specResources(c).requests,
            };
          }),
        };
        break;
      case "deferred":
        next = {
          ...status,
          conditions: [
            ...conditions,
            condition("PodResizePending", "Deferred", "Node didn't have enough resource: cpu"),
          ],
        };
        break;
      case "infeasible":
        next = {
          ...status,
          conditions: [
            ...conditions,
            condition(
              "PodResizePending",
              "Infeasible",
              `Node didn't have enough capacity: cpu, requested: more than allocatable ${this.#options.allocatableMillicores}m`,
            ),
          ],
        };
        break;
      case "error":
        next = {
          ...status,
          conditions: [
            ...conditions,
            condition("PodResizeInProgress", "Error", "simulated resize failure"),
          ],
        };
        break;
    }
    const same = (status.conditions ?? []).some((c) =>
      next.conditions!.some((n) =>
        n.type === c.type && n.reason === c.reason &&
        (c as { observedGeneration?: number }).observedGeneration === generation &&
        n.type.startsWith("PodResize")
      )
    );
    if (response !== "accept" && same) return null; // already answered this generation
    const list = this.answered.get(key) ?? [];
    list.push(response);
    this.answered.set(key, list);
    return next;
  }
}

/** The simulated container id of a pod's container (64 hex digits, stable). */
export function containerID(pod: k8s.V1Pod, container: string): string {
  return hex(`${pod.metadata?.uid}/${container}`);
}

/** Whether a running pod's spec resources differ from those its status reports. */
function resizeWanted(pod: k8s.V1Pod): boolean {
  const statuses = pod.status?.containerStatuses ?? [];
  if (pod.status?.phase !== "Running" || statuses.length === 0) return false;
  return (pod.spec?.containers ?? []).some((c) => {
    const cs = statuses.find((s) => s.name === c.name);
    return JSON.stringify(normalise(cs?.resources)) !==
      JSON.stringify(normalise(plainResources(c.resources)));
  });
}

function plainResources(resources: k8s.V1ResourceRequirements | undefined): Resources {
  const out: Resources = {};
  if (resources?.requests && Object.keys(resources.requests).length > 0) {
    out.requests = { ...resources.requests };
  }
  if (resources?.limits && Object.keys(resources.limits).length > 0) {
    out.limits = { ...resources.limits };
  }
  return out;
}

function normalise(resources: Resources | undefined): Resources {
  return plainResources(resources as k8s.V1ResourceRequirements);
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return h;
}

function hex(text: string): string {
  let out = "";
  for (let i = 0; out.length < 64; i++) out += hash(`${text}#${i}`).toString(16).padStart(8, "0");
  return out.slice(0, 64);
}
