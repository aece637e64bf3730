/**
 * The local cluster's plan: its addresses and every configuration file its
 * node components read, as pure functions of a {@link ClusterPlan}. Nothing
 * here touches the machine.
 *
 * Network rules (the workplace's, and a good idea anywhere): pods live in
 * network namespaces on one bridge with an address range used only there.
 * The API server, CoreDNS, the kubelet and kube-proxy listen on the bridge's
 * address. Pods get no default route, only routes into the cluster's range,
 * nothing is masqueraded, and an nftables rule drops anything forwarded from
 * the bridge to another interface: every packet ends on the bridge, in a
 * pod's namespace or on the host. The node has every image it runs imported
 * (the sandbox image included), so nothing is ever pulled.
 *
 * @module
 */

import { PAUSE_IMAGE } from "./images.ts";
import type { RestoreStep } from "./_host_state.ts";

/** Addresses, names and paths of one local cluster. */
export interface ClusterPlan {
  /** The node's name (also the kubelet's identity `system:node:<name>`). */
  nodeName: string;
  /** The Linux bridge the pods are attached to. */
  bridge: string;
  /** The bridge's address: API server, kubelet, kube-proxy, CoreDNS and node InternalIP. */
  bridgeAddress: string;
  /** Prefix length of the pod range on the bridge. */
  podPrefixLength: number;
  /** The pod range (CIDR). */
  podCidr: string;
  /** The Service range (CIDR). */
  serviceCidr: string;
  /** The `kubernetes` Service's ClusterIP (first address of the range). */
  apiServiceIp: string;
  /** The `kube-dns` Service's ClusterIP. */
  dnsServiceIp: string;
  /** The range pods get routes to (pods and Services). */
  clusterRange: string;
  /** The state directory: everything the cluster writes lives under it. */
  dir: string;
  /** Where the CNI plugins are (Debian's containernetworking-plugins). */
  cniBinDir: string;
  /** The runc binary. */
  runc: string;
  /** The sandbox (pause) image's name. */
  pauseImage: string;
  /** The kubelet enforces CPU limits with CFS quota (false: "no limits" in the lab). */
  cpuCfsQuota: boolean;
  /** The nftables table holding the forward-drop rule. */
  guardTable: string;
}

/** The defaults: one range, 10.213.0.0/16, used only by this cluster. */
export function defaultPlan(dir: string, overrides: Partial<ClusterPlan> = {}): ClusterPlan {
  return {
    nodeName: "mbcas-node",
    bridge: "mbcas0",
    bridgeAddress: "10.213.0.1",
    podPrefixLength: 24,
    podCidr: "10.213.0.0/24",
    serviceCidr: "10.213.1.0/24",
    apiServiceIp: "10.213.1.1",
    dnsServiceIp: "10.213.1.10",
    clusterRange: "10.213.0.0/16",
    dir,
    cniBinDir: "/usr/lib/cni",
    runc: "/usr/sbin/runc",
    pauseImage: PAUSE_IMAGE,
    cpuCfsQuota: true,
    guardTable: "mbcas_cluster_guard",
    ...overrides,
  };
}

/** Paths under the cluster's state directory `dir`. */
export function paths(dir: string): {
  containerdRoot: string;
  containerdState: string;
  containerdSocket: string;
  containerdConfig: string;
  runcRoot: string;
  cniConfDir: string;
  cniIpamDir: string;
  kubeletRoot: string;
  kubeletConfig: string;
  podLogs: string;
  resolvConf: string;
  kubeProxyConfig: string;
  corefile: string;
  images: string;
} {
  const d = dir;
  return {
    containerdRoot: `${d}/containerd/root`,
    containerdState: `${d}/containerd/state`,
    containerdSocket: `${d}/containerd/containerd.sock`,
    containerdConfig: `${d}/containerd/config.toml`,
    runcRoot: `${d}/containerd/runc`,
    cniConfDir: `${d}/cni/net.d`,
    cniIpamDir: `${d}/cni/ipam`,
    kubeletRoot: `${d}/kubelet`,
    kubeletConfig: `${d}/kubelet-config.yaml`,
    podLogs: `${d}/pod-logs`,
    resolvConf: `${d}/resolv.conf`,
    kubeProxyConfig: `${d}/kube-proxy-config.yaml`,
    corefile: `${d}/Corefile`,
    images: `${d}/images`,
  };
}

/**
 * containerd 2.x (config version 3): all state under the cluster's
 * directory, network namespaces under its state directory, the CRI plugin
 * with runc and the cgroupfs driver, CNI from the plan.
 * `restrict_oom_score_adj`: root here lacks CAP_SYS_RESOURCE, so runc could
 * not lower a container's oom_score_adj and every sandbox would fail.
 */
export function containerdConfig(plan: ClusterPlan): string {
  const p = paths(plan.dir);
  return `version = 3
root = ${toml(p.containerdRoot)}
state = ${toml(p.containerdState)}
temp = ${toml(`${plan.dir}/containerd/tmp`)}
imports = []
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = ${toml(p.containerdSocket)}

[ttrpc]
  address = ${toml(`${p.containerdSocket}.ttrpc`)}

[debug]
  address = ""

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = ${toml(`${plan.dir}/containerd/opt`)}

  [plugins."io.containerd.image-verifier.v1.bindir"]
    bin_dir = ${toml(`${plan.dir}/containerd/image-verifier`)}

  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = ${toml(plan.pauseImage)}

  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    cdi_spec_dirs = []
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = [${toml(plan.cniBinDir)}]
      conf_dir = ${toml(p.cniConfDir)}
      max_conf_num = 1
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = ${toml(plan.runc)}
          Root = ${toml(p.runcRoot)}
          SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
`;
}

/**
 * The CNI network: the bridge plugin on the plan's bridge, the bridge as
 * gateway but not as default gateway, no masquerading, host-local addresses
 * with their state under the cluster's directory, and one route: into the
 * cluster's range.
 */
export function cniConfig(plan: ClusterPlan): string {
  const p = paths(plan.dir);
  return JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: "mbcas",
      plugins: [{
        type: "bridge",
        bridge: plan.bridge,
        isGateway: true,
        isDefaultGateway: false,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          dataDir: p.cniIpamDir,
          ranges: [[{ subnet: plan.podCidr, gateway: plan.bridgeAddress }]],
          routes: [{ dst: plan.clusterRange }],
        },
      }],
    },
    null,
    2,
  );
}

/**
 * The KubeletConfiguration: cgroup v1 allowed (kubelet 1.35 refuses it by
 * default), the cgroupfs driver, serving on the bridge address, cluster DNS
 * at the kube-dns Service, every directory it can be told about under the
 * cluster's directory, and evictions that do not fire on a busy test machine.
 */
export function kubeletConfig(plan: ClusterPlan, caFile: string): string {
  const p = paths(plan.dir);
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
cpuCFSQuota: ${plan.cpuCfsQuota}
address: ${plan.bridgeAddress}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: ${caFile}
authorization:
  mode: AlwaysAllow
clusterDomain: cluster.local
clusterDNS: ["${plan.dnsServiceIp}"]
resolvConf: ${p.resolvConf}
containerRuntimeEndpoint: unix://${p.containerdSocket}
imageServiceEndpoint: unix://${p.containerdSocket}
podLogsDir: ${p.podLogs}
volumePluginDir: ${plan.dir}/volume-plugins
failSwapOn: false
serializeImagePulls: false
registerNode: true
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
fileCheckFrequency: 10s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
evictionPressureTransitionPeriod: 10s
rotateCertificates: false
serverTLSBootstrap: false
logging:
  format: text
`;
}

/**
 * kube-proxy in iptables mode on the bridge address: the conntrack settings
 * 0 (the kernel's are left as they are), no NodePorts on localhost or on any
 * address outside the pod range.
 */
export function kubeProxyConfig(plan: ClusterPlan, kubeconfig: string): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: ${kubeconfig}
bindAddress: ${plan.bridgeAddress}
healthzBindAddress: ${plan.bridgeAddress}:10256
metricsBindAddress: ${plan.bridgeAddress}:10249
clusterCIDR: ${plan.podCidr}
hostnameOverride: ${plan.nodeName}
nodePortAddresses: ["${plan.podCidr}"]
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  localhostNodePorts: false
  masqueradeAll: false
`;
}

/**
 * CoreDNS as a host process on the bridge address: answers for the cluster
 * domain from the API, and for nothing else (no forwarding: nothing leaves
 * the machine).
 */
export function corefile(plan: ClusterPlan, kubeconfig: string): string {
  return `.:53 {
    bind ${plan.bridgeAddress}
    errors
    health ${plan.bridgeAddress}:8180
    ready ${plan.bridgeAddress}:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig ${kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
`;
}

/**
 * The `kube-dns` Service (no selector: CoreDNS is not a pod) and the
 * EndpointSlice pointing it at CoreDNS on the bridge address.
 */
export function dnsObjects(plan: ClusterPlan): Record<string, unknown>[] {
  const ports = [
    { name: "dns", port: 53, protocol: "UDP" },
    { name: "dns-tcp", port: 53, protocol: "TCP" },
  ];
  return [{
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "kube-dns", namespace: "kube-system", labels: { "k8s-app": "kube-dns" } },
    spec: { clusterIP: plan.dnsServiceIp, ports: ports.map((p) => ({ ...p, targetPort: 53 })) },
  }, {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: "kube-dns-host",
      namespace: "kube-system",
      labels: {
        "kubernetes.io/service-name": "kube-dns",
        "endpointslice.kubernetes.io/managed-by": "mbcas-local-cluster",
      },
    },
    addressType: "IPv4",
    endpoints: [{ addresses: [plan.bridgeAddress], conditions: { ready: true } }],
    ports,
  }];
}

/**
 * The nftables guard: an `inet` table whose forward hook (ahead of
 * iptables' filter chains) drops whatever the bridge would forward to
 * another interface.
 */
export function guardRuleset(plan: ClusterPlan): string {
  return `table inet ${plan.guardTable} {
  chain forward {
    type filter hook forward priority -10; policy accept;
    iifname "${plan.bridge}" oifname != "${plan.bridge}" drop
  }
}
`;
}

/** The kubelet's resolv.conf for `dnsPolicy: Default` pods: no upstream at all. */
export function hostResolvConf(): string {
  return "# the local cluster has no upstream DNS\noptions ndots:1\n";
}

function toml(value: string): string {
  return JSON.stringify(value);
}

/**
 * The restore steps that are the cluster's to take: every cgroup, nftables,
 * sysctl and owned-directory step (the plan confines those already), but
 * only the mounts, network namespaces, links and routes of the cluster (its
 * directory, the CRI's netns, its bridge and the pods' veths), so that
 * whatever else runs on the machine keeps its own.
 */
export function ownedByCluster(plan: ClusterPlan): (step: RestoreStep) => boolean {
  return (step) => {
    switch (step.kind) {
      case "umount":
        return step.path.startsWith(`${plan.dir}/`) || step.path === plan.dir ||
          /^\/(var\/)?run\/netns(\/|$)/.test(step.path) ||
          step.path.startsWith("/var/lib/kubelet");
      case "netns":
        return step.name.startsWith("cni-");
      case "link":
        return step.name === plan.bridge || step.name.startsWith("veth");
      case "route":
        return step.route.includes(plan.bridge) || step.route.includes(plan.clusterRange) ||
          step.route.startsWith(plan.podCidr);
      default:
        return true;
    }
  };
}
