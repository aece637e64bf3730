import type { ContainerRuntime, QosClass } from "./types.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Static (file or URL) pods have a 32-hex-digit hash as UID. */
const HASH_UID = /^[0-9a-f]{32}$/;

/** Whether a directory name is the root of a kubelet tree (`kubepods`, `kubepods.slice`, `kubelet-kubepods.slice`). */
export function isKubepodsRoot(name: string): boolean {
  return name === "kubepods" || /^(?:[a-z0-9_]+-)*kubepods\.slice$/.test(name);
}

/** The QoS class a QoS-level directory stands for, or null. */
export function qosDirectory(name: string): Exclude<QosClass, "guaranteed"> | null {
  const match =
    /^(?:(?:[a-z0-9_]+-)*kubepods-(burstable|besteffort)\.slice|(burstable|besteffort))$/
      .exec(name);
  if (match === null) return null;
  return (match[1] ?? match[2]) as "burstable" | "besteffort";
}

/** A pod directory name parsed: its UID, and the QoS the name itself encodes (systemd driver). */
export interface PodName {
  /** Pod UID with dashes. */
  uid: string;
  /** QoS class in the name (systemd), or undefined (cgroupfs: the parent says). */
  qos?: QosClass;
  /** The driver the name's format implies. */
  driver: "systemd" | "cgroupfs";
}

/** Parses `pod<uid>` (cgroupfs) or `…kubepods[-qos]-pod<uid_with_underscores>.slice` (systemd). */
export function parsePodName(name: string): PodName | null {
  const systemd = /^(?:[a-z0-9_]+-)*kubepods(?:-(burstable|besteffort))?-pod([0-9a-f_]+)\.slice$/
    .exec(name);
  if (systemd !== null) {
    const uid = systemd[2].replaceAll("_", "-");
    if (!UUID.test(uid) && !HASH_UID.test(uid)) return null;
    const qos = (systemd[1] ?? "guaranteed") as QosClass;
    return { uid, qos, driver: "systemd" };
  }
  const cgroupfs = /^pod([0-9a-f-]+)$/.exec(name);
  if (cgroupfs !== null && (UUID.test(cgroupfs[1]) || HASH_UID.test(cgroupfs[1]))) {
    return { uid: cgroupfs[1], driver: "cgroupfs" };
  }
  return null;
}

/** A container directory name parsed. */
export interface ContainerName {
  /** Bare container id. */
  id: string;
  /** Runtime from the prefix, `unknown` for a bare id. */
  runtime: ContainerRuntime;
}

const RUNTIME_PREFIX: Record<string, ContainerRuntime> = {
  "cri-containerd": "containerd",
  crio: "cri-o",
  docker: "docker",
};

/** Parses `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, or a bare `<id>`. */
export function parseContainerName(name: string): ContainerName | null {
  const match = /^(?:(cri-containerd|crio|docker)-)?([0-9a-f]{64})(?:\.scope)?$/.exec(name);
  if (match === null) return null;
  return { id: match[2], runtime: match[1] === undefined ? "unknown" : RUNTIME_PREFIX[match[1]] };
}

/** Why a directory under a pod is not a container, when it is a known helper. */
export function helperReason(name: string): string | null {
  if (/^crio-conmon-[0-9a-f]{64}\.scope$/.test(name)) {
    return "CRI-O conmon monitor, not a container";
  }
  return null;
}

/** The `containerID` string pod status uses for this runtime and id. */
export function statusContainerID(runtime: ContainerRuntime, id: string): string {
  switch (runtime) {
    case "containerd":
      return `containerd://${id}`;
    case "cri-o":
      return `cri-o://${id}`;
    case "docker":
      return `docker://${id}`;
    default:
      return id;
  }
}

/** The bare id of a pod-status `containerID` (`containerd://abc` → `abc`). */
export function bareContainerID(containerID: string): string {
  const at = containerID.indexOf("://");
  return at < 0 ? containerID : containerID.slice(at + 3);
}
