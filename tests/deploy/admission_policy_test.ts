/**
 * MBCAS's ValidatingAdmissionPolicies (deploy/policy) on the test bed (a real
 * kube-apiserver v1.35; the nodes are Node objects, no kubelet), with real
 * ServiceAccount tokens bound to pods on those nodes (TokenRequest): an agent's
 * token writes only its own node's PodAllocations, the controller's resizes
 * only CPU limits of opted-in pods.
 */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { API_VERSION, GROUP, KIND, PLURAL } from "../../src/api/mod.ts";
import { applyManifests, MANIFESTS, startTestbed, waitForCrd } from "../../src/testbed/mod.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { burstablePod, eventually, kubeConfig } from "../k8s/_helpers.ts";

const SYSTEM = "mbcas-system";

/** A PodAllocation for pod `name` in `shop` that names `nodeName`. */
function podAllocation(name: string, uid: string, nodeName: string) {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name, namespace: "shop" },
    spec: {
      podName: name,
      podUID: uid,
      nodeName,
      containers: [{
        name: "app",
        cpuLimit: "600m",
        evidence: {
          demandMillicores: 550,
          weight: 250,
          floorMillicores: 250,
          capMillicores: 4000,
          usageMillicores: 420,
          throttledRatio: 0.4,
        },
      }],
      market: {
        price: 0,
        capacityMillicores: 4000,
        contended: false,
        computedAt: new Date().toISOString(),
      },
    },
  };
}

requireOrSkip(
  "admission policies: an agent writes only its node's PodAllocations, the controller resizes only CPU limits of opted-in pods (test bed, real pod-bound tokens)",
  testbedMissing(),
  async (t) => {
    await using testbed = await startTestbed({ log: (line) => console.log(line) });
    const admin = kubeConfig(testbed.identities.admin.kubeconfig);
    const core = admin.makeApiClient(k8s.CoreV1Api);
    const client = Deno.createHttpClient({ caCerts: [testbed.caPem] });
    try {
      /** One API request with a bearer token; the status and the decoded body. */
      const call = async (
        token: string,
        method: string,
        path: string,
        body?: unknown,
        contentType = "application/json",
      ): Promise<{ status: number; body: Record<string, unknown> }> => {
        const response = await fetch(`${testbed.url}${path}`, {
          client,
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": contentType },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(15_000),
        });
        return { status: response.status, body: await response.json() };
      };
      /** A token of ServiceAccount `sa`, bound to pod `pod` (TokenRequest). */
      const boundToken = async (sa: string, pod: k8s.V1Pod): Promise<string> => {
        const review = await core.createNamespacedServiceAccountToken({
          name: sa,
          namespace: SYSTEM,
          body: {
            spec: {
              audiences: [],
              expirationSeconds: 3600,
              boundObjectRef: {
                apiVersion: "v1",
                kind: "Pod",
                name: pod.metadata!.name!,
                uid: pod.metadata!.uid!,
              },
            },
          },
        });
        return review.status!.token;
      };
      const systemPod = (name: string, sa: string, nodeName: string) =>
        core.createNamespacedPod({
          namespace: SYSTEM,
          body: {
            metadata: { name },
            spec: {
              nodeName,
              serviceAccountName: sa,
              containers: [{ name: "main", image: "registry.k8s.io/pause:3.10" }],
            },
          },
        });
      const paPath = (name?: string) =>
        `/apis/${API_VERSION}/namespaces/shop/${PLURAL}${name ? `/${name}` : ""}`;

      let agentA = "";
      let agentB = "";
      let controller = "";
      const shopPods: Record<string, k8s.V1Pod> = {};

      await t.step(
        "install the CRD, RBAC and the policies; tokens of agents on two nodes",
        async () => {
          await applyManifests(admin, [MANIFESTS.crd, ...MANIFESTS.rbac, ...MANIFESTS.policy]);
          await waitForCrd(admin, `${PLURAL}.${GROUP}`);
          for (const name of ["node-a", "node-b"]) {
            await core.createNode({ body: { metadata: { name } } });
          }
          await core.createNamespace({ body: { metadata: { name: "shop" } } });
          await core.createNamespace({
            body: { metadata: { name: "opted", labels: { "mbcas.io/managed": "true" } } },
          });
          const podA = await systemPod("agent-a", "mbcas-agent", "node-a");
          const podB = await systemPod("agent-b", "mbcas-agent", "node-b");
          const podC = await systemPod("controller", "mbcas-controller", "node-a");
          agentA = await boundToken("mbcas-agent", podA);
          agentB = await boundToken("mbcas-agent", podB);
          controller = await boundToken("mbcas-controller", podC);
          const review = await call(
            agentA,
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            {
              apiVersion: "authentication.k8s.io/v1",
              kind: "SelfSubjectReview",
            },
          );
          const user = (review.body.status as { userInfo: k8s.V1UserInfo }).userInfo;
          assert.equal(user.username, `system:serviceaccount:${SYSTEM}:mbcas-agent`);
          assert.deepEqual(user.extra?.["authentication.kubernetes.io/node-name"], ["node-a"]);
          const pods: [string, string, Record<string, string>][] = [
            ["shop", "web", { "mbcas.io/managed": "true" }],
            ["shop", "bystander", {}],
            ["opted", "api", {}],
            ["opted", "released", { "mbcas.io/managed": "false" }],
          ];
          for (const [namespace, name, annotations] of pods) {
            const pod = burstablePod(namespace, name, "node-a", [{
              name: "app",
              cpuRequest: "250m",
              cpuLimit: "500m",
              memory: "64Mi",
            }]);
            pod.metadata!.annotations = annotations;
            shopPods[`${namespace}/${name}`] = await core.createNamespacedPod({
              namespace,
              body: pod,
            });
          }
          // The API server loads each policy on its own: every one is probed
          // (dry run, so a probe that gets through before its policy changes
          // nothing) until it denies.
          const probes: [string, () => ReturnType<typeof call>][] = [
            ["mbcas-agent-own-node", () =>
              call(
                agentB,
                "POST",
                `${paPath()}?dryRun=All`,
                podAllocation("probe", crypto.randomUUID(), "node-a"),
              )],
            ["mbcas-agent-own-heartbeat", () =>
              call(
                agentA,
                "POST",
                `/apis/coordination.k8s.io/v1/namespaces/${SYSTEM}/leases?dryRun=All`,
                {
                  apiVersion: "coordination.k8s.io/v1",
                  kind: "Lease",
                  metadata: { name: "mbcas-agent-node-b" },
                  spec: { holderIdentity: "node-b", leaseDurationSeconds: 30 },
                },
              )],
            ["mbcas-controller-cpu-limits-only", () =>
              call(
                controller,
                "PATCH",
                "/api/v1/namespaces/shop/pods/bystander/resize?dryRun=All",
                { spec: { containers: [{ name: "app", resources: { limits: { cpu: "700m" } } }] } },
                "application/strategic-merge-patch+json",
              )],
          ];
          for (const [policy, probe] of probes) {
            await eventually(`${policy} denies`, async () => {
              const answer = await probe();
              return answer.status === 403 && String(answer.body.message).includes(policy);
            });
          }
        },
      );

      await t.step("the API server type-checks every policy without a warning", async () => {
        const api = admin.makeApiClient(k8s.AdmissionregistrationV1Api);
        for (
          const name of [
            "mbcas-agent-own-node",
            "mbcas-agent-own-heartbeat",
            "mbcas-controller-cpu-limits-only",
          ]
        ) {
          const checked = await eventually(`${name} type-checked`, async () => {
            const policy = await api.readValidatingAdmissionPolicy({ name });
            return policy.status?.typeChecking ?? false;
          });
          assert.deepEqual(checked.expressionWarnings ?? [], [], name);
        }
      });

      await t.step("an agent writes its own node's PodAllocation", async () => {
        const web = shopPods["shop/web"];
        const created = await call(
          agentA,
          "POST",
          paPath(),
          podAllocation("web", web.metadata!.uid!, "node-a"),
        );
        assert.equal(created.status, 201, JSON.stringify(created.body));
        const replaced = await call(agentA, "PUT", paPath("web"), {
          ...podAllocation("web", web.metadata!.uid!, "node-a"),
          metadata: { ...created.body.metadata as object },
        });
        assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
      });

      await t.step("it cannot write, move or delete another node's", async () => {
        const uid = shopPods["shop/web"].metadata!.uid!;
        const other = await call(
          agentA,
          "POST",
          paPath(),
          podAllocation("bystander", uid, "node-b"),
        );
        assert.equal(other.status, 403);
        assert.match(
          String(other.body.message),
          /mbcas-agent-own-node.*the mbcas-agent of node node-a may not write a PodAllocation for node node-b/,
        );
        const current = await call(agentA, "GET", paPath("web"));
        const moved = await call(agentA, "PUT", paPath("web"), {
          ...current.body,
          spec: { ...(current.body.spec as object), nodeName: "node-b" },
        });
        assert.equal(moved.status, 403);
        assert.match(String(moved.body.message), /may not write a PodAllocation for node node-b/);
        // The agent of node-b can neither take it over nor delete it.
        const takeover = await call(agentB, "PUT", paPath("web"), {
          ...current.body,
          spec: { ...(current.body.spec as object), nodeName: "node-b" },
        });
        assert.equal(takeover.status, 403);
        assert.match(
          String(takeover.body.message),
          /may not take over the PodAllocation of node node-a/,
        );
        const deleted = await call(agentB, "DELETE", paPath("web"));
        assert.equal(deleted.status, 403);
        assert.match(
          String(deleted.body.message),
          /node node-b may not write a PodAllocation for node node-a/,
        );
        // A token without a node (the test bed's token-file identity of the same user) writes nothing.
        const unbound = await call(
          testbed.identities.agent.token!,
          "POST",
          paPath(),
          podAllocation("x", uid, "node-a"),
        );
        assert.equal(unbound.status, 403);
        assert.match(String(unbound.body.message), /only with a token bound to a pod on a node/);
        // Other users are not the policy's business: an admin writes any node's.
        const byAdmin = await call(
          testbed.identities.admin.token!,
          "POST",
          paPath(),
          podAllocation("bystander", uid, "node-b"),
        );
        assert.equal(byAdmin.status, 201, JSON.stringify(byAdmin.body));
      });

      await t.step(
        "an agent writes only its own node's heartbeat Lease, held by its node",
        async () => {
          const leases = `/apis/coordination.k8s.io/v1/namespaces/${SYSTEM}/leases`;
          // A Lease's times are MicroTime: six fractional digits.
          const now = () => new Date().toISOString().replace(/Z$/, "000Z");
          const lease = (name: string, holder: string) => ({
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: {
              name,
              labels: {
                "app.kubernetes.io/name": "mbcas",
                "app.kubernetes.io/component": "agent-heartbeat",
              },
            },
            spec: {
              holderIdentity: holder,
              leaseDurationSeconds: 30,
              renewTime: now(),
            },
          });
          const own = await call(agentA, "POST", leases, lease("mbcas-agent-node-a", "node-a"));
          assert.equal(own.status, 201, JSON.stringify(own.body));
          const renewed = await call(
            agentA,
            "PATCH",
            `${leases}/mbcas-agent-node-a`,
            { spec: { renewTime: now() } },
            "application/merge-patch+json",
          );
          assert.equal(renewed.status, 200, JSON.stringify(renewed.body));
          // Another node's Lease: neither created nor renewed by node-a's agent.
          const other = await call(agentA, "POST", leases, lease("mbcas-agent-node-b", "node-b"));
          assert.equal(other.status, 403);
          assert.match(
            String(other.body.message),
            /mbcas-agent-own-heartbeat.*the mbcas-agent of node node-a may write only its own heartbeat Lease mbcas-agent-node-a, not mbcas-agent-node-b/,
          );
          const renamed = await call(agentB, "PATCH", `${leases}/mbcas-agent-node-a`, {
            spec: { renewTime: now() },
          }, "application/merge-patch+json");
          assert.equal(renamed.status, 403);
          assert.match(
            String(renamed.body.message),
            /may write only its own heartbeat Lease mbcas-agent-node-b/,
          );
          // Its own Lease, but vouching for another node.
          const vouching = await call(
            agentA,
            "PATCH",
            `${leases}/mbcas-agent-node-a`,
            { spec: { holderIdentity: "node-b" } },
            "application/merge-patch+json",
          );
          assert.equal(vouching.status, 403);
          assert.match(
            String(vouching.body.message),
            /the heartbeat Lease of node node-a must be held by node-a/,
          );
        },
      );

      const resize = (token: string, key: string, resources: Record<string, unknown>) => {
        const [namespace, name] = key.split("/");
        return call(
          token,
          "PATCH",
          `/api/v1/namespaces/${namespace}/pods/${name}/resize`,
          { spec: { containers: [{ name: "app", resources }] } },
          "application/strategic-merge-patch+json",
        );
      };

      await t.step("the controller resizes the CPU limit of an opted-in pod", async () => {
        for (const key of ["shop/web", "opted/api", "opted/released"]) {
          const done = await resize(controller, key, { limits: { cpu: "700m" } });
          assert.equal(done.status, 200, `${key}: ${JSON.stringify(done.body)}`);
          const pod = done.body as unknown as k8s.V1Pod;
          assert.equal(pod.spec!.containers[0].resources!.limits!.cpu, "700m");
        }
      });

      await t.step("but no request, no memory, and no pod that is not opted in", async () => {
        const memory = await resize(controller, "shop/web", {
          limits: { cpu: "700m", memory: "128Mi" },
        });
        assert.equal(memory.status, 403, JSON.stringify(memory.body));
        assert.match(
          String(memory.body.message),
          /may change only CPU limits.*changes a limit other than CPU/,
        );
        const request = await resize(controller, "shop/web", { requests: { cpu: "300m" } });
        assert.equal(request.status, 403, JSON.stringify(request.body));
        assert.match(String(request.body.message), /may change only CPU limits.*changes a request/);
        const bystander = await resize(controller, "shop/bystander", { limits: { cpu: "700m" } });
        assert.equal(bystander.status, 403, JSON.stringify(bystander.body));
        assert.match(
          String(bystander.body.message),
          /may resize only pods opted in to MBCAS.*shop\/bystander/,
        );
        const pod = await core.readNamespacedPod({ namespace: "shop", name: "bystander" });
        assert.equal(pod.spec!.containers[0].resources!.limits!.cpu, "500m", "nothing changed");
        // An admin still may.
        const byAdmin = await resize(testbed.identities.admin.token!, "shop/bystander", {
          limits: { cpu: "700m" },
        });
        assert.equal(byAdmin.status, 200, JSON.stringify(byAdmin.body));
      });
    } finally {
      client.close();
    }
  },
);
