// deno-lint-ignore-file no-explicit-any -- tests build and mutate arbitrary (also invalid) JSON objects
/**
 * The test bed, the PodAllocation API, RBAC and the shared Kubernetes layer,
 * against a real kube-apiserver v1.35 with etcd and kube-controller-manager.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as k8s from "@kubernetes/client-node";
import {
  API_VERSION,
  GROUP,
  KIND,
  PLURAL,
  validatePodAllocation,
  VERSION,
} from "../../src/api/mod.ts";
import {
  Informer,
  kubeSource,
  loadKubeConfig,
  makeApiClient,
  patchPodResize,
  toPlain,
  updatePodAllocationStatus,
} from "../../src/k8s/mod.ts";
import {
  applyManifests,
  KubeletSimulator,
  MANIFESTS,
  startTestbed,
  waitForCrd,
} from "../../src/testbed/mod.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { burstablePod, eventually, kubeConfig, rejection } from "./_helpers.ts";

const UID = "0b6d3f4e-6f3c-4a2e-9d5e-3c1f2a7b8c9d";

function podAllocation(
  name: string,
  namespace: string,
  patch: (pa: Record<string, any>) => void = () => {},
) {
  const pa: Record<string, any> = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name, namespace },
    spec: {
      podName: name,
      podUID: UID,
      nodeName: "node-a",
      containers: [{
        name: "app",
        cpuLimit: "750m",
        evidence: {
          demandMillicores: 700,
          weight: 250,
          floorMillicores: 250,
          capMillicores: 4000,
          usageMillicores: 420,
          throttledRatio: 0.4,
        },
      }],
      market: {
        price: 0.41,
        capacityMillicores: 3800,
        contended: true,
        computedAt: "2026-11-27T12:00:00Z",
      },
    },
  };
  patch(pa);
  return pa;
}

requireOrSkip(
  "test bed: control plane, PodAllocation API, RBAC, informer and resize against kube-apiserver v1.35",
  testbedMissing(),
  async (t) => {
    const testbed = await startTestbed({ log: (line) => console.log(line) });
    console.log(`test bed started in ${Math.round(testbed.startupMs)} ms`);
    const admin = kubeConfig(testbed.identities.admin.kubeconfig);
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const custom = admin.makeApiClient(k8s.CustomObjectsApi);
    const objects = k8s.KubernetesObjectApi.makeApiClient(admin);
    const simulator = new KubeletSimulator(admin, {
      nodeName: "node-a",
      allocatableMillicores: 4000,
    });
    try {
      await t.step(
        "reports the real version, and authenticates tokens and client certificates from Deno",
        async () => {
          const version = await admin.makeApiClient(k8s.VersionApi).getCode();
          assert.equal(version.gitVersion, "v1.35.4");
          assert.equal(version.minor, "35");
          for (
            const [identity, user] of [
              [testbed.identities.admin, "mbcas-admin"],
              [testbed.identities.certAdmin, "mbcas-cert-admin"],
              [testbed.identities.agent, "system:serviceaccount:mbcas-system:mbcas-agent"],
            ] as const
          ) {
            const review = await kubeConfig(identity.kubeconfig).makeApiClient(
              k8s.AuthenticationV1Api,
            ).createSelfSubjectReview({ body: {} });
            assert.equal(review.status?.userInfo?.username, user);
          }
          // The same through the pooled Deno-fetch transport the controller uses (CA, token, client certificate).
          for (
            const [identity, user] of [
              [testbed.identities.admin, "mbcas-admin"],
              [testbed.identities.certAdmin, "mbcas-cert-admin"],
            ] as const
          ) {
            const api = makeApiClient(kubeConfig(identity.kubeconfig), k8s.AuthenticationV1Api);
            const review = await api.createSelfSubjectReview({ body: {} });
            assert.equal(review.status?.userInfo?.username, user);
          }
          // The certificate identity is a real cluster admin (O=system:masters), not anonymous.
          const list = await kubeConfig(testbed.identities.certAdmin.kubeconfig).makeApiClient(
            k8s.CoreV1Api,
          ).listNamespace();
          assert.ok(list.items.some((n) => n.metadata?.name === "kube-system"));
        },
      );

      await t.step(
        "loads in-cluster credentials from a mounted service-account directory",
        async () => {
          const sa = await Deno.makeTempDir();
          const saved = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"].map((k) =>
            [k, Deno.env.get(k)] as const
          );
          try {
            await Deno.writeTextFile(join(sa, "token"), testbed.identities.agent.token!);
            await Deno.copyFile(testbed.caFile, join(sa, "ca.crt"));
            await Deno.writeTextFile(join(sa, "namespace"), "mbcas-system");
            Deno.env.set("KUBERNETES_SERVICE_HOST", "127.0.0.1");
            Deno.env.set("KUBERNETES_SERVICE_PORT", new URL(testbed.url).port);
            const kc = loadKubeConfig({ serviceAccountDir: sa, inClusterHost: "127.0.0.1" });
            const review = await kc.makeApiClient(k8s.AuthenticationV1Api).createSelfSubjectReview({
              body: {},
            });
            assert.equal(
              review.status?.userInfo?.username,
              "system:serviceaccount:mbcas-system:mbcas-agent",
            );
          } finally {
            for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
            await Deno.remove(sa, { recursive: true });
          }
        },
      );

      await t.step("installs the CRD and RBAC; the CRD becomes Established", async () => {
        await applyManifests(admin, [MANIFESTS.crd, ...MANIFESTS.rbac]);
        await waitForCrd(admin, `${PLURAL}.${GROUP}`);
        await core.createNamespace({ body: { metadata: { name: "shop" } } });
      });

      await t.step(
        "the zod schema and the CRD accept and reject the same PodAllocations",
        async () => {
          const cases: [string, Record<string, any>, string | null][] = [
            ["valid", podAllocation("p1", "shop"), null],
            [
              "valid with request and null price",
              podAllocation("p2", "shop", (pa) => {
                pa.spec.containers[0].cpuRequest = "250m";
                pa.spec.market.price = null;
              }),
              null,
            ],
            [
              "valid: static pod hash UID, whole cores",
              podAllocation("p3", "shop", (pa) => {
                pa.spec.podUID = "0123456789abcdef0123456789abcdef";
                pa.spec.containers[0].cpuLimit = "1.5";
              }),
              null,
            ],
            [
              "name differs from podName",
              podAllocation("p4", "shop", (pa) => (pa.spec.podName = "other")),
              "metadata.name must equal spec.podName",
            ],
            [
              "bad pod UID",
              podAllocation("p5", "shop", (pa) => (pa.spec.podUID = "not-a-uid")),
              "podUID",
            ],
            [
              "limit not a quantity",
              podAllocation("p6", "shop", (pa) => (pa.spec.containers[0].cpuLimit = "lots")),
              "cpuLimit must be a positive CPU quantity",
            ],
            [
              "limit zero",
              podAllocation("p7", "shop", (pa) => (pa.spec.containers[0].cpuLimit = "0")),
              "cpuLimit must be a positive CPU quantity",
            ],
            [
              "limit negative",
              podAllocation("p8", "shop", (pa) => (pa.spec.containers[0].cpuLimit = "-100m")),
              "cpuLimit must be a positive CPU quantity",
            ],
            [
              "limit below request",
              podAllocation("p9", "shop", (pa) => (pa.spec.containers[0].cpuRequest = "1")),
              "cpuLimit must not be below cpuRequest",
            ],
            [
              "duplicate container names",
              podAllocation(
                "p10",
                "shop",
                (pa) => pa.spec.containers.push({ ...pa.spec.containers[0] }),
              ),
              "Duplicate value",
            ],
            [
              "no containers",
              podAllocation("p11", "shop", (pa) => (pa.spec.containers = [])),
              "containers",
            ],
            [
              "evidence floor above cap",
              podAllocation(
                "p12",
                "shop",
                (pa) => (pa.spec.containers[0].evidence.floorMillicores = 5000),
              ),
              "floorMillicores must not exceed capMillicores",
            ],
            [
              "weight zero",
              podAllocation("p13", "shop", (pa) => (pa.spec.containers[0].evidence.weight = 0)),
              "weight",
            ],
            [
              "negative price",
              podAllocation("p14", "shop", (pa) => (pa.spec.market.price = -1)),
              "price",
            ],
            [
              "missing computedAt",
              podAllocation("p15", "shop", (pa) => delete pa.spec.market.computedAt),
              "computedAt",
            ],
            [
              "throttled ratio above 1",
              podAllocation(
                "p16",
                "shop",
                (pa) => (pa.spec.containers[0].evidence.throttledRatio = 1.5),
              ),
              "throttledRatio",
            ],
          ];
          for (const [name, object, expected] of cases) {
            const zod = validatePodAllocation(object);
            let server: string | null = null;
            try {
              await objects.create(object as k8s.KubernetesObject, undefined, "All");
            } catch (error) {
              server = (await rejection(Promise.reject(error))).message;
            }
            assert.equal(
              zod.ok,
              server === null,
              `${name}: zod ${
                zod.ok ? "accepted" : `rejected (${(zod as { error: string }).error})`
              }, API ${server === null ? "accepted" : `rejected (${server})`}`,
            );
            if (expected !== null) {
              assert.ok(
                server!.includes(expected),
                `${name}: API message ${JSON.stringify(server)} lacks ${JSON.stringify(expected)}`,
              );
            }
          }
        },
      );

      await t.step(
        "kubectl get pa prints node, tier, guarantee, limit, applied, price, state",
        async () => {
          const body = podAllocation("web", "shop", (pa) => {
            pa.spec.tier = "elastic";
            pa.spec.containers[0].cpuGuarantee = "200m";
          });
          await custom.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: "shop",
            plural: PLURAL,
            body,
          });
          const out = await new Deno.Command("kubectl", {
            args: [
              "--kubeconfig",
              testbed.identities.admin.kubeconfig,
              "get",
              "pa",
              "-n",
              "shop",
              "web",
            ],
            stdout: "piped",
            stderr: "piped",
          }).output();
          const text = new TextDecoder().decode(out.stdout);
          assert.match(
            text,
            /NAME\s+NODE\s+TIER\s+GUARANTEE\s+LIMIT\s+APPLIED\s+PRICE\s+STATE\s+AGE/,
          );
          assert.match(text, /web\s+node-a\s+elastic\s+200m\s+750m\s+0\.41/);
          const mbcas = await new Deno.Command("kubectl", {
            args: ["--kubeconfig", testbed.identities.admin.kubeconfig, "get", "mbcas", "-A"],
            stdout: "piped",
          }).output();
          assert.match(
            new TextDecoder().decode(mbcas.stdout),
            /shop\s+web\s+node-a/,
            "category mbcas lists PodAllocations",
          );
        },
      );

      await t.step(
        "status is written through the status subresource, with conflict retries",
        async () => {
          await updatePodAllocationStatus(custom, "shop", "web", (_current, generation) => ({
            observedGeneration: generation,
            state: "Applied",
            containers: [{ name: "app", cpuLimit: "750m" }],
            conditions: [{
              type: "Applied",
              status: "True",
              reason: "Resized",
              message: "limits applied",
              lastTransitionTime: new Date().toISOString(),
            }],
          }));
          const pa = await custom.getNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: "shop",
            plural: PLURAL,
            name: "web",
          }) as Record<string, any>;
          assert.equal(pa.status.state, "Applied");
          assert.equal(pa.status.observedGeneration, pa.metadata.generation);
          assert.equal(validatePodAllocation(pa).ok, true);
        },
      );

      await t.step(
        "RBAC: the agent and the controller can do what they need and nothing else",
        async () => {
          const can = async (file: string, attrs: k8s.V1ResourceAttributes) =>
            (await kubeConfig(file).makeApiClient(k8s.AuthorizationV1Api)
              .createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: attrs } } }))
              .status?.allowed ?? false;
          const pa = { group: GROUP, resource: PLURAL, namespace: "shop" };
          const matrix: [string, string, k8s.V1ResourceAttributes, boolean][] = [
            ["agent", "watch pods", { resource: "pods", verb: "watch" }, true],
            ["agent", "get nodes", { resource: "nodes", verb: "get" }, true],
            ["agent", "create podallocations", { ...pa, verb: "create" }, true],
            ["agent", "update podallocations", { ...pa, verb: "update" }, true],
            ["agent", "delete podallocations", { ...pa, verb: "delete" }, true],
            ["agent", "update podallocations/status", {
              ...pa,
              subresource: "status",
              verb: "update",
            }, false],
            ["agent", "patch pods/resize", {
              resource: "pods",
              subresource: "resize",
              verb: "patch",
              namespace: "shop",
            }, false],
            [
              "agent",
              "update pods",
              { resource: "pods", verb: "update", namespace: "shop" },
              false,
            ],
            [
              "agent",
              "get secrets",
              { resource: "secrets", verb: "get", namespace: "shop" },
              false,
            ],
            ["agent", "list secrets", { resource: "secrets", verb: "list" }, false],
            [
              "agent",
              "create events",
              { resource: "events", verb: "create", namespace: "shop" },
              false,
            ],
            ["controller", "watch podallocations", { ...pa, verb: "watch" }, true],
            ["controller", "update podallocations/status", {
              ...pa,
              subresource: "status",
              verb: "update",
            }, true],
            ["controller", "patch pods/resize", {
              resource: "pods",
              subresource: "resize",
              verb: "patch",
              namespace: "shop",
            }, true],
            ["controller", "list pods", { resource: "pods", verb: "list" }, true],
            ["controller", "create events", {
              resource: "events",
              verb: "create",
              namespace: "shop",
            }, true],
            ["controller", "update leases in mbcas-system", {
              group: "coordination.k8s.io",
              resource: "leases",
              verb: "update",
              namespace: "mbcas-system",
            }, true],
            ["controller", "update leases elsewhere", {
              group: "coordination.k8s.io",
              resource: "leases",
              verb: "update",
              namespace: "shop",
            }, false],
            ["controller", "create podallocations", { ...pa, verb: "create" }, false],
            ["controller", "update podallocations", { ...pa, verb: "update" }, false],
            [
              "controller",
              "update pods",
              { resource: "pods", verb: "update", namespace: "shop" },
              false,
            ],
            [
              "controller",
              "patch pods",
              { resource: "pods", verb: "patch", namespace: "shop" },
              false,
            ],
            [
              "controller",
              "delete pods",
              { resource: "pods", verb: "delete", namespace: "shop" },
              false,
            ],
            ["controller", "get secrets", {
              resource: "secrets",
              verb: "get",
              namespace: "mbcas-system",
            }, false],
            ["nobody", "list pods", { resource: "pods", verb: "list" }, false],
          ];
          for (const [who, what, attrs, expected] of matrix) {
            const file = testbed.identities[who as "agent" | "controller" | "nobody"].kubeconfig;
            assert.equal(
              await can(file, attrs),
              expected,
              `${who} ${expected ? "may" : "may not"} ${what}`,
            );
          }
          // Real requests, not just reviews.
          const agentCore = kubeConfig(testbed.identities.agent.kubeconfig).makeApiClient(
            k8s.CoreV1Api,
          );
          assert.equal((await rejection(agentCore.listSecretForAllNamespaces())).code, 403);
          assert.ok((await agentCore.listNode()).items !== undefined);
          const controllerCustom = kubeConfig(testbed.identities.controller.kubeconfig)
            .makeApiClient(k8s.CustomObjectsApi);
          assert.equal(
            (await rejection(
              controllerCustom.createNamespacedCustomObject({
                group: GROUP,
                version: VERSION,
                namespace: "shop",
                plural: PLURAL,
                body: podAllocation("x", "shop"),
              }),
            )).code,
            403,
          );
          const agentCustom = kubeConfig(testbed.identities.agent.kubeconfig).makeApiClient(
            k8s.CustomObjectsApi,
          );
          await agentCustom.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: "shop",
            plural: PLURAL,
            body: podAllocation("agent-made", "shop"),
          });
          assert.equal(
            (await rejection(
              updatePodAllocationStatus(
                agentCustom,
                "shop",
                "agent-made",
                () => ({ state: "Applied" }),
              ),
            )).code,
            403,
          );
        },
      );

      await t.step(
        "the kubelet simulator runs pods; pods/resize applies, and a QoS-changing resize is refused with 422",
        async () => {
          await simulator.start();
          const node = await core.readNode({ name: "node-a" });
          assert.equal(node.status?.allocatable?.cpu, "4");
          await core.createNamespacedPod({
            namespace: "shop",
            body: burstablePod("shop", "web", "node-a", [{
              name: "app",
              cpuRequest: "250m",
              cpuLimit: "500m",
            }]),
          });
          const running = await eventually("pod running with resources in status", async () => {
            const pod = await core.readNamespacedPod({ name: "web", namespace: "shop" });
            return pod.status?.phase === "Running" &&
                pod.status.containerStatuses?.[0]?.resources?.limits?.cpu === "500m"
              ? pod
              : undefined;
          });
          assert.equal(running.status?.qosClass, "Burstable");
          assert.equal(running.status?.containerStatuses?.[0].allocatedResources?.cpu, "250m");

          const controllerCore = kubeConfig(testbed.identities.controller.kubeconfig).makeApiClient(
            k8s.CoreV1Api,
          );
          const patched = await patchPodResize(controllerCore, "shop", "web", [{
            name: "app",
            cpuLimit: "800m",
          }]);
          assert.equal(patched.spec?.containers[0].resources?.limits?.cpu, "800m");
          assert.equal(
            patched.spec?.containers[0].resources?.requests?.cpu,
            "250m",
            "requests untouched",
          );
          assert.equal(patched.metadata?.generation, 2);
          await eventually("kubelet-reported limit 800m", async () => {
            const pod = await core.readNamespacedPod({ name: "web", namespace: "shop" });
            return pod.status?.containerStatuses?.[0]?.resources?.limits?.cpu === "800m" &&
              pod.status?.observedGeneration === 2;
          });

          // Limits = requests for every resource would turn Burstable into Guaranteed.
          const qos = await rejection(
            patchPodResize(controllerCore, "shop", "web", [{ name: "app", cpuLimit: "250m" }]),
          );
          assert.equal(qos.code, 422);
          assert.match(qos.message, /QOS|QoS/);
          // The controller may only resize: a plain pod update is forbidden.
          const plainPatch = controllerCore.patchNamespacedPod(
            { name: "web", namespace: "shop", body: { metadata: { labels: { x: "y" } } } },
            k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch),
          );
          assert.equal((await rejection(plainPatch)).code, 403);
        },
      );

      await t.step(
        "the kubelet simulator answers Deferred, Infeasible and Error as a kubelet would",
        async () => {
          for (
            const [name, response, type, reason] of [
              ["deferred", "deferred", "PodResizePending", "Deferred"],
              ["infeasible", "infeasible", "PodResizePending", "Infeasible"],
              ["failing", "error", "PodResizeInProgress", "Error"],
            ] as const
          ) {
            await core.createNamespacedPod({
              namespace: "shop",
              body: burstablePod("shop", name, "node-a", [{
                name: "app",
                cpuRequest: "100m",
                cpuLimit: "200m",
              }]),
            });
            await eventually(
              `${name} running`,
              async () =>
                (await core.readNamespacedPod({ name, namespace: "shop" })).status?.phase ===
                  "Running",
            );
            simulator.setResizeResponse("shop", name, response);
            await patchPodResize(core, "shop", name, [{ name: "app", cpuLimit: "300m" }]);
            const pod = await eventually(`${name}: ${type}/${reason}`, async () => {
              const p = toPlain(await core.readNamespacedPod({ name, namespace: "shop" }));
              return p.status?.conditions?.some((c) => c.type === type && c.reason === reason)
                ? p
                : undefined;
            });
            assert.equal(
              pod.status?.containerStatuses?.[0].resources?.limits?.cpu,
              "200m",
              "nothing applied",
            );
            const condition = pod.status!.conditions!.find((c) => c.type === type) as
              & k8s.V1PodCondition
              & { observedGeneration?: number };
            assert.equal(condition.observedGeneration, pod.metadata?.generation);
            simulator.setResizeResponse("shop", name, "accept");
            await eventually(`${name} accepted later`, async () => {
              const p = await core.readNamespacedPod({ name, namespace: "shop" });
              return p.status?.containerStatuses?.[0].resources?.limits?.cpu === "300m" &&
                !p.status.conditions?.some((c) => c.type === type);
            });
          }
        },
      );

      await t.step(
        "deleting a pod garbage-collects its PodAllocation (owner reference)",
        async () => {
          const pod = await core.createNamespacedPod({
            namespace: "shop",
            body: burstablePod("shop", "doomed", "", [{
              name: "app",
              cpuRequest: "100m",
              cpuLimit: "200m",
            }]),
          });
          await custom.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: "shop",
            plural: PLURAL,
            body: podAllocation("doomed", "shop", (pa) => {
              pa.spec.podUID = pod.metadata!.uid;
              pa.metadata.ownerReferences = [{
                apiVersion: "v1",
                kind: "Pod",
                name: "doomed",
                uid: pod.metadata!.uid,
                controller: true,
                blockOwnerDeletion: false,
              }];
            }),
          });
          await core.deleteNamespacedPod({ name: "doomed", namespace: "shop" });
          await eventually("PodAllocation garbage-collected", async () => {
            try {
              await custom.getNamespacedCustomObject({
                group: GROUP,
                version: VERSION,
                namespace: "shop",
                plural: PLURAL,
                name: "doomed",
              });
              return false;
            } catch (error) {
              return (error as { code?: number }).code === 404;
            }
          }, 90_000);
        },
      );

      await t.step(
        "the informer relists on 410 Gone and rides out an API server restart",
        async () => {
          const list = async () => {
            const result = await custom.listNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: "shop",
              plural: PLURAL,
            }) as { items: k8s.KubernetesObject[]; metadata: { resourceVersion: string } };
            return { items: result.items, resourceVersion: result.metadata.resourceVersion };
          };
          const informer = new Informer<k8s.KubernetesObject>(
            kubeSource(admin, {
              path: `/apis/${GROUP}/${VERSION}/namespaces/shop/${PLURAL}`,
              list,
            }),
            {
              name: "test",
              initialResourceVersion: "1",
              backoffInitialMs: 100,
              backoffMaxMs: 1000,
              resyncMs: 0,
            },
          );
          const seen: string[] = [];
          informer.subscribe((e) => seen.push(`${e.type}:${e.object.metadata?.name}`));
          informer.start();
          try {
            await eventually(
              "relist after 410",
              () => informer.stats.expired >= 1 && informer.hasSynced,
            );
            assert.ok(informer.get("shop/web"), "listed objects are cached");

            await testbed.stopApiserver();
            await new Promise((r) => setTimeout(r, 1500));
            await testbed.startApiserver();
            await custom.createNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: "shop",
              plural: PLURAL,
              body: podAllocation("after-restart", "shop"),
            });
            await eventually(
              "event after restart",
              () => informer.get("shop/after-restart") !== undefined,
              30_000,
            );
            assert.ok(
              informer.stats.errors >= 1 || informer.stats.watches >= 3,
              JSON.stringify(informer.stats),
            );
            await custom.deleteNamespacedCustomObject({
              group: GROUP,
              version: VERSION,
              namespace: "shop",
              plural: PLURAL,
              name: "after-restart",
            });
            await eventually("delete seen", () => informer.get("shop/after-restart") === undefined);
            assert.ok(seen.includes("deleted:after-restart"));
          } finally {
            await informer.stop();
          }
        },
      );
    } finally {
      await simulator.stop();
      await testbed.stop();
    }
    // Nothing left behind.
    // (The reaper shell that guards against a crashed test exits within a second of the directory's removal.)
    await eventually("no test bed process left", async () => {
      const left = await new Deno.Command("pgrep", { args: ["-f", testbed.dir] }).output();
      return new TextDecoder().decode(left.stdout).trim() === "";
    }, 5000);
    assert.equal(
      await Deno.stat(testbed.dir).then(() => true, () => false),
      false,
      "temp dir removed",
    );
  },
);
