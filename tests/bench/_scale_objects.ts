/**
 * The objects `deno task bench:scale` creates: KWOK-managed nodes, pods of the
 * size real workloads have (an app container, a service-mesh sidecar and a log
 * shipper, an init container, the labels and annotations Helm, a mesh and CI
 * leave, projected volumes), PodAllocations shaped as the agent writes them,
 * the KWOK stages that play their kubelets (including in-place resizes), and
 * the API server's audit policy the benchmark counts requests with.
 *
 * @module
 */
import { API_VERSION, KIND } from "../../src/api/mod.ts";

/** The node annotation KWOK is told to manage (`--manage-nodes-with-annotation-selector`). */
export const KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node";
/** A label on every benchmark pod saying whether it is opted in (what the benchmark's watch selects). */
export const OPTED_IN_LABEL = "scale.mbcas.io/opted-in";
/** The declared CPU limits of every pod's containers, as the PodAllocations first repeat them. */
export const DECLARED_LIMITS = { app: "1", "istio-proxy": "2", "log-shipper": "200m" } as const;

/** A deterministic hex string of `length` characters from `seed`. */
export function hex(seed: number, length: number): string {
  let out = "";
  let x = (seed * 2654435761 + 0x9e3779b9) >>> 0;
  while (out.length < length) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out += x.toString(16).padStart(8, "0");
  }
  return out.slice(0, length);
}

/** A KWOK-managed node with the allocatable CPU and kubelet version a v1.35 node reports, and an image list. */
export function nodeBody(name: string): Record<string, unknown> {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name,
      annotations: {
        [KWOK_NODE_ANNOTATION]: "fake",
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
      },
      labels: {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "m6i.8xlarge",
        "topology.kubernetes.io/region": "eu-west-1",
        "topology.kubernetes.io/zone": `eu-west-1${"abc"[name.length % 3]}`,
        type: "kwok",
      },
    },
    spec: {},
    status: {
      allocatable: { cpu: "31850m", memory: "124Gi", pods: "110", "ephemeral-storage": "95Gi" },
      capacity: { cpu: "32", memory: "128Gi", pods: "110", "ephemeral-storage": "100Gi" },
      nodeInfo: {
        architecture: "amd64",
        containerRuntimeVersion: "containerd://2.1.4",
        kernelVersion: "6.8.0-1024-aws",
        kubeProxyVersion: "v1.35.4",
        kubeletVersion: "v1.35.4",
        operatingSystem: "linux",
        osImage: "Ubuntu 24.04.2 LTS",
        bootID: "",
        machineID: "",
        systemUUID: "",
      },
      images: Array.from({ length: 24 }, (_, k) => ({
        names: [
          `registry.example.com/team-${k % 6}/image-${k}@sha256:${hex(k, 64)}`,
          `registry.example.com/team-${k % 6}/image-${k}:1.${k}.0`,
        ],
        sizeBytes: 20_000_000 + k * 3_000_000,
      })),
    },
  };
}

/** The namespace of pod `i`: opted-in pods in labelled namespaces, the others in plain ones. */
export function podNamespace(i: number, optedIn: boolean): string {
  return optedIn ? `scale-m-${i % 10}` : `scale-u-${i % 10}`;
}

/** The name of pod `i` (and of its PodAllocation). */
export function podName(i: number): string {
  return `svc-${i % 97}-${hex(i % 97, 10)}-${hex(i, 5)}`;
}

const env = (pairs: Record<string, string>) =>
  Object.entries(pairs).map(([name, value]) => ({ name, value }));

/**
 * A pod as a Deployment with a mesh sidecar leaves it: three containers and
 * an init container, ~15 labels and annotations (Helm, mesh, CI, checksums,
 * the mesh's status JSON), env, probes and projected volumes. Burstable (CPU
 * requests below limits, CPU resize without restart), bound to `nodeName`.
 */
export function podBody(i: number, nodeName: string, optedIn: boolean): Record<string, unknown> {
  const app = `svc-${i % 97}`;
  const hash = hex(i % 97, 10);
  const version = `1.${i % 7}.${i % 13}`;
  const mounts = [
    { name: "config", mountPath: "/etc/app", readOnly: true },
    { name: "kube-api-access", mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" },
    { name: "tmp", mountPath: "/tmp" },
  ];
  const probe = (path: string, port: number) => ({
    httpGet: { path, port, scheme: "HTTP" },
    initialDelaySeconds: 5,
    periodSeconds: 10,
    timeoutSeconds: 2,
    failureThreshold: 3,
  });
  const securityContext = {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    capabilities: { drop: ["ALL"] },
  };
  const cpuResize = [
    { resourceName: "cpu", restartPolicy: "NotRequired" },
    { resourceName: "memory", restartPolicy: "RestartContainer" },
  ];
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: podName(i),
      namespace: podNamespace(i, optedIn),
      generateName: `${app}-${hash}-`,
      labels: {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": `${app}-prod`,
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/component": "backend",
        "app.kubernetes.io/part-of": "shop",
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": `${app}-4.2.1`,
        "pod-template-hash": hash,
        "security.istio.io/tlsMode": "istio",
        "service.istio.io/canonical-name": app,
        "service.istio.io/canonical-revision": version,
        team: ["payments", "search", "checkout", "catalog"][i % 4],
        [OPTED_IN_LABEL]: String(optedIn),
      },
      annotations: {
        "kubectl.kubernetes.io/restartedAt": "2025-11-20T09:14:03Z",
        "kubectl.kubernetes.io/default-container": "app",
        "kubectl.kubernetes.io/default-logs-container": "app",
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "15020",
        "prometheus.io/path": "/stats/prometheus",
        "checksum/config": hex(i % 97 + 1000, 64),
        "checksum/secret": hex(i % 97 + 2000, 64),
        "istio.io/rev": "default",
        "sidecar.istio.io/status": JSON.stringify({
          initContainers: ["istio-init"],
          containers: ["istio-proxy"],
          volumes: [
            "workload-socket",
            "credential-socket",
            "workload-certs",
            "istio-envoy",
            "istio-data",
            "istio-podinfo",
            "istio-token",
            "istiod-ca-cert",
          ],
          imagePullSecrets: null,
          revision: "default",
        }),
        "cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
        "ci.example.com/commit": hex(i % 97 + 3000, 40),
        "ci.example.com/pipeline": `https://ci.example.com/shop/${app}/pipelines/${
          100_000 + (i % 97)
        }`,
      },
    },
    spec: {
      nodeName,
      serviceAccountName: "default",
      restartPolicy: "Always",
      dnsPolicy: "ClusterFirst",
      terminationGracePeriodSeconds: 30,
      enableServiceLinks: false,
      securityContext: { fsGroup: 1337, seccompProfile: { type: "RuntimeDefault" } },
      tolerations: [
        {
          key: "node.kubernetes.io/not-ready",
          operator: "Exists",
          effect: "NoExecute",
          tolerationSeconds: 300,
        },
        {
          key: "node.kubernetes.io/unreachable",
          operator: "Exists",
          effect: "NoExecute",
          tolerationSeconds: 300,
        },
      ],
      initContainers: [{
        name: "istio-init",
        image: "docker.io/istio/proxyv2:1.24.3",
        args: ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT"],
        resources: {
          requests: { cpu: "10m", memory: "40Mi" },
          limits: { cpu: "2", memory: "1Gi" },
        },
        securityContext: { ...securityContext, runAsNonRoot: false, runAsUser: 0 },
      }],
      containers: [
        {
          name: "app",
          image: `registry.example.com/shop/${app}:${version}@sha256:${hex(i % 97 + 4000, 64)}`,
          ports: [
            { name: "http", containerPort: 8080, protocol: "TCP" },
            { name: "metrics", containerPort: 9090, protocol: "TCP" },
          ],
          env: [
            ...env({
              LOG_LEVEL: "info",
              HTTP_PORT: "8080",
              OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel-collector.observability:4317",
              OTEL_SERVICE_NAME: app,
              DB_HOST: `${app}-db.shop.svc.cluster.local`,
              CACHE_URL: "redis://redis.shop.svc.cluster.local:6379/0",
            }),
            { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
            { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
            {
              name: "DB_PASSWORD",
              valueFrom: { secretKeyRef: { name: `${app}-db`, key: "password" } },
            },
          ],
          resources: {
            requests: { cpu: "250m", memory: "256Mi" },
            limits: { cpu: DECLARED_LIMITS.app, memory: "512Mi" },
          },
          resizePolicy: cpuResize,
          volumeMounts: mounts,
          livenessProbe: probe("/healthz", 8080),
          readinessProbe: probe("/readyz", 8080),
          securityContext,
        },
        {
          name: "istio-proxy",
          image: "docker.io/istio/proxyv2:1.24.3",
          args: [
            "proxy",
            "sidecar",
            "--domain",
            "$(POD_NAMESPACE).svc.cluster.local",
            "--proxyLogLevel=warning",
            "--proxyComponentLogLevel=misc:error",
            "--log_output_level=default:info",
          ],
          ports: [{ name: "http-envoy-prom", containerPort: 15090, protocol: "TCP" }],
          env: [
            ...env({
              PILOT_CERT_PROVIDER: "istiod",
              CA_ADDR: "istiod.istio-system.svc:15012",
              ISTIO_META_APP_CONTAINERS: "app",
              ISTIO_META_CLUSTER_ID: "Kubernetes",
              ISTIO_META_MESH_ID: "cluster.local",
              TRUST_DOMAIN: "cluster.local",
              ISTIO_META_WORKLOAD_NAME: app,
              ISTIO_META_OWNER: `kubernetes://apis/apps/v1/namespaces/shop/deployments/${app}`,
            }),
            { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
            { name: "INSTANCE_IP", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
          ],
          resources: {
            requests: { cpu: "100m", memory: "128Mi" },
            limits: { cpu: DECLARED_LIMITS["istio-proxy"], memory: "1Gi" },
          },
          resizePolicy: cpuResize,
          readinessProbe: probe("/healthz/ready", 15021),
          volumeMounts: [
            { name: "workload-socket", mountPath: "/var/run/secrets/workload-spiffe-uds" },
            { name: "istio-envoy", mountPath: "/etc/istio/proxy" },
            { name: "istio-data", mountPath: "/var/lib/istio/data" },
            { name: "istio-podinfo", mountPath: "/etc/istio/pod" },
            { name: "istio-token", mountPath: "/var/run/secrets/tokens" },
            { name: "istiod-ca-cert", mountPath: "/var/run/secrets/istio" },
          ],
          securityContext: { ...securityContext, runAsUser: 1337, runAsGroup: 1337 },
        },
        {
          name: "log-shipper",
          image: "cr.fluentbit.io/fluent/fluent-bit:3.2.4",
          args: ["--config=/fluent-bit/etc/fluent-bit.yaml"],
          resources: {
            requests: { cpu: "50m", memory: "64Mi" },
            limits: { cpu: DECLARED_LIMITS["log-shipper"], memory: "128Mi" },
          },
          resizePolicy: cpuResize,
          volumeMounts: [
            { name: "tmp", mountPath: "/var/log/app", readOnly: true },
            { name: "config", mountPath: "/fluent-bit/etc", readOnly: true },
          ],
          securityContext,
        },
      ],
      volumes: [
        { name: "config", configMap: { name: `${app}-config`, defaultMode: 420 } },
        { name: "tmp", emptyDir: {} },
        { name: "workload-socket", emptyDir: {} },
        { name: "istio-envoy", emptyDir: { medium: "Memory" } },
        { name: "istio-data", emptyDir: {} },
        {
          name: "istio-podinfo",
          downwardAPI: {
            items: [
              { path: "labels", fieldRef: { fieldPath: "metadata.labels" } },
              { path: "annotations", fieldRef: { fieldPath: "metadata.annotations" } },
            ],
          },
        },
        {
          name: "istio-token",
          projected: {
            sources: [{
              serviceAccountToken: {
                audience: "istio-ca",
                expirationSeconds: 43200,
                path: "istio-token",
              },
            }],
          },
        },
        { name: "istiod-ca-cert", configMap: { name: "istio-ca-root-cert" } },
        {
          name: "kube-api-access",
          projected: {
            defaultMode: 420,
            sources: [
              { serviceAccountToken: { expirationSeconds: 3607, path: "token" } },
              {
                configMap: {
                  name: "kube-root-ca.crt",
                  items: [{ key: "ca.crt", path: "ca.crt" }],
                },
              },
              {
                downwardAPI: {
                  items: [{
                    path: "namespace",
                    fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" },
                  }],
                },
              },
            ],
          },
        },
      ],
    },
  };
}

/**
 * A PodAllocation as the agent writes it for pod `i`: every container, with
 * its evidence and the node's market. `appLimit` is the app container's CPU
 * limit; the others keep their declared limits. The market interval is an
 * hour: no agent renews a heartbeat here, and a realistic 5 s interval would
 * make the controller restore every pod after a minute.
 */
export function podAllocationBody(
  i: number,
  uid: string,
  nodeName: string,
  appLimit: string = DECLARED_LIMITS.app,
): Record<string, unknown> {
  const container = (name: string, cpuLimit: string, demand: number) => ({
    name,
    cpuLimit,
    cpuGuarantee: "50m",
    evidence: {
      demandMillicores: demand,
      weight: 1,
      floorMillicores: 50,
      capMillicores: 4000,
      usageMillicores: Math.round(demand * 0.8),
      throttledRatio: 0,
      measured: true,
    },
  });
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: podName(i), namespace: podNamespace(i, true) },
    spec: {
      podName: podName(i),
      podUID: uid,
      nodeName,
      tier: "protected",
      containers: [
        container("app", appLimit, 600),
        container("istio-proxy", DECLARED_LIMITS["istio-proxy"], 120),
        container("log-shipper", DECLARED_LIMITS["log-shipper"], 30),
      ],
      market: {
        price: 0,
        capacityMillicores: 31_850,
        contended: false,
        computedAt: new Date().toISOString(),
        intervalSeconds: 3600,
        elasticBudgetMillicores: 0,
      },
    },
  };
}

/**
 * KWOK's configuration: its pod stages, replacing the defaults. `pod-ready`
 * is KWOK's own, plus what a v1.35 kubelet reports that the controller reads
 * (`containerStatuses[].resources`, `allocatedResources`); `pod-resize` plays
 * an in-place resize: once a pod's spec CPU limits differ from the reported
 * ones, it reports the spec's resources as applied (at once, with no
 * `PodResizeInProgress` phase). Node stages stay KWOK's defaults
 * (initialize, heartbeat with a Lease).
 */
export const KWOK_CONFIG = `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 8
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.podIP'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: PodScheduled
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        imageID: {{ .image | Quote }}
        containerID: {{ printf "containerd://%s" (sha256sum (printf "%s/%s" $.metadata.uid .name)) | Quote }}
        name: {{ .name | Quote }}
        ready: true
        started: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
        allocatedResources: {{ toJson .resources.requests }}
        resources: {{ toJson .resources }}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        imageID: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-resize
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.podIP != null and ([.spec.containers[] | .resources.limits.cpu] != [.status.containerStatuses[]? | .resources.limits.cpu])'
      operator: 'In'
      values:
      - 'true'
  next:
    statusTemplate: |
      containerStatuses:
      {{ range $i, $c := .spec.containers }}
      {{ $old := index $.status.containerStatuses $i }}
      - image: {{ $c.image | Quote }}
        imageID: {{ $old.imageID | Quote }}
        containerID: {{ $old.containerID | Quote }}
        name: {{ $c.name | Quote }}
        ready: true
        started: true
        restartCount: 0
        state: {{ toJson $old.state }}
        allocatedResources: {{ toJson $c.resources.requests }}
        resources: {{ toJson $c.resources }}
      {{ end }}
`;

/** The user names the test bed gives the agent's and the controller's ServiceAccounts. */
export const USERS = {
  agent: "system:serviceaccount:mbcas-system:mbcas-agent",
  controller: "system:serviceaccount:mbcas-system:mbcas-controller",
} as const;

/**
 * The audit policy: every request of the controller, and the agent
 * identity's PodAllocation writes (the benchmark's changes), at Metadata
 * level; nothing else, so auditing costs the API server little.
 */
export const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  users: ["${USERS.controller}"]
- level: Metadata
  users: ["${USERS.agent}"]
  resources:
  - group: allocation.mbcas.io
    resources: ["podallocations"]
- level: None
`;
