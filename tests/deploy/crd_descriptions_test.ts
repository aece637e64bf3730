/**
 * The PodAllocation CRD documents itself (issue 17): every field of its
 * schema, at every depth (object properties, list items and their
 * properties, map values), has a description, and `kubectl explain` on the
 * test bed (a real kube-apiserver v1.35, no kubelet) shows each of them and
 * never `<no description>`.
 */
import assert from "node:assert/strict";
import * as k8s from "@kubernetes/client-node";
import { GROUP, PLURAL } from "../../src/api/mod.ts";
import { applyManifests, MANIFESTS, startTestbed, waitForCrd } from "../../src/testbed/mod.ts";
import { requireOrSkip, testbedMissing } from "../_support/requirements.ts";
import { eventually, kubeConfig } from "../k8s/_helpers.ts";

const CRD = `${PLURAL}.${GROUP}`;
/** What `kubectl explain` prints for a field without a description. */
const NO_DESCRIPTION = "<no description>";
/**
 * The API server forbids anything but `type` on the root `metadata` (it is
 * ObjectMeta, and kubectl explain shows ObjectMeta's own documentation).
 */
const EXEMPT = new Set(["metadata"]);

/** A node of an OpenAPI v3 schema, as far as the walk reads it. */
interface Schema {
  description?: unknown;
  properties?: Record<string, Schema>;
  items?: Schema | Schema[];
  additionalProperties?: Schema | boolean;
}

/** One schema node the walk visited. */
interface Visited {
  /** Where it is: `spec.containers[].cpuLimit`; `` for the root, `[]` list items, `{}` map values. */
  path: string;
  /** The field path `kubectl explain` takes (`spec.containers.cpuLimit`; `` for the root). */
  field: string;
  /** Whether it is a named field or the root (not list items or map values). */
  named: boolean;
  /** Its description; undefined when it has none. */
  description: string | undefined;
  /** The node itself. */
  schema: Schema;
}

/** Every node of `schema`, depth first: properties, list items, map values. */
function walk(schema: Schema, path = "", field = "", named = true): Visited[] {
  const description = typeof schema.description === "string" ? schema.description : undefined;
  const visited: Visited[] = [{ path, field, named, description, schema }];
  const join = (base: string, name: string) => (base === "" ? name : `${base}.${name}`);
  for (const [name, child] of Object.entries(schema.properties ?? {})) {
    visited.push(...walk(child, join(path, name), join(field, name), true));
  }
  const items = schema.items === undefined ? [] : [schema.items].flat();
  for (const item of items) visited.push(...walk(item, `${path}[]`, field, false));
  if (typeof schema.additionalProperties === "object") {
    visited.push(...walk(schema.additionalProperties, `${path}{}`, field, false));
  }
  return visited;
}

/** The field `field` is a field of (`` for the resource's own fields). */
function parentField(field: string): string {
  return field.slice(0, Math.max(0, field.lastIndexOf(".")));
}

/** The paths of `schema` whose description is missing or blank (but the exempt ones). */
function undocumented(schema: Schema): string[] {
  return walk(schema)
    .filter((v) => !EXEMPT.has(v.path) && (v.description ?? "").trim() === "")
    .map((v) => v.path === "" ? "(root)" : v.path);
}

/** Collapses every run of whitespace to one space, as kubectl's line wrapping is undone. */
function flat(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** The CRD as the repository ships it. */
async function loadCrd(): Promise<k8s.V1CustomResourceDefinition> {
  return k8s.loadYaml<k8s.V1CustomResourceDefinition>(await Deno.readTextFile(MANIFESTS.crd));
}

/** Every version's `openAPIV3Schema`, by version name. */
function schemas(crd: k8s.V1CustomResourceDefinition): [string, Schema][] {
  return crd.spec.versions.map((v) => {
    const schema = v.schema?.openAPIV3Schema as Schema | undefined;
    assert.ok(schema, `version ${v.name} has an openAPIV3Schema`);
    return [v.name, schema];
  });
}

Deno.test("CRD descriptions: the walk reports every undocumented property, list item and map value", () => {
  const schema: Schema = {
    description: "root",
    properties: {
      metadata: {},
      documented: { description: "yes" },
      blank: { description: "  " },
      list: {
        description: "a list",
        items: { properties: { inner: { description: "inner" }, bare: {} } },
      },
      map: { description: "a map", additionalProperties: { description: "" } },
    },
  };
  assert.deepEqual(undocumented(schema), ["blank", "list[]", "list[].bare", "map{}"]);
  assert.deepEqual(undocumented({ properties: { metadata: {} } }), ["(root)"]);
  assert.deepEqual(
    walk(schema).filter((v) => v.named).map((v) => v.field),
    ["", "metadata", "documented", "blank", "list", "list.inner", "list.bare", "map"],
  );
});

Deno.test("CRD descriptions: every field of every version of the PodAllocation schema has one", async () => {
  const crd = await loadCrd();
  assert.equal(crd.metadata?.name, CRD);
  for (const [version, schema] of schemas(crd)) {
    const visited = walk(schema);
    // The walk reaches the deepest fields: a list map's items' properties, nested objects.
    for (
      const path of [
        "spec.containers[].evidence.throttledRatio",
        "spec.market.elasticBudgetMillicores",
        "status.recentResizeTimes[]",
        "status.baseline.containers[].cpuLimit",
        "status.infeasible.containers[].name",
        "status.conditions[].lastTransitionTime",
      ]
    ) {
      assert.ok(visited.some((v) => v.path === path), `${version}: the walk reaches ${path}`);
    }
    assert.deepEqual(
      undocumented(schema),
      [],
      `${version}: fields without a description (kubectl explain would say ${NO_DESCRIPTION})`,
    );
  }
});

Deno.test("CRD descriptions: the walk names each description removed from the shipped CRD", async () => {
  const [[, schema]] = schemas(await loadCrd());
  const evidence = schema.properties!.spec.properties!.containers.items as Schema;
  delete evidence.properties!.evidence.properties!.weight.description;
  delete schema.properties!.status.properties!.conditions.description;
  assert.deepEqual(undocumented(schema), [
    "spec.containers[].evidence.weight",
    "status.conditions",
  ]);
});

// ---------------------------------------------------------------------------
// kubectl explain against a real API server

/** kubectl v1.35 as scripts/build_node.sh builds it, else the one on PATH. */
const KUBECTL = (() => {
  const built = `${
    Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`
  }/mbcas/node/bin/kubectl`;
  try {
    Deno.statSync(built);
    return built;
  } catch {
    return "kubectl";
  }
})();

/** Why {@link KUBECTL} cannot run here, or null. */
function kubectlMissing(): string | null {
  try {
    const out = new Deno.Command(KUBECTL, {
      args: ["version", "--client"],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    return out.success ? null : `\`${KUBECTL} version --client\` fails`;
  } catch {
    return "no kubectl (scripts/build_node.sh builds it into ~/.cache/mbcas/node/bin)";
  }
}

requireOrSkip(
  "CRD descriptions: kubectl explain shows every PodAllocation field's description, never <no description> (test bed)",
  testbedMissing() ?? kubectlMissing(),
  async (t) => {
    await using testbed = await startTestbed({ log: (line) => console.log(line) });
    const admin = kubeConfig(testbed.identities.admin.kubeconfig);
    const cacheDir = await Deno.makeTempDir({ prefix: "mbcas-explain-" });
    /** Runs `kubectl explain podallocations[.FIELD] ARGS…` with kubectl's cache in `cache`. */
    const run = async (cache: string, field: string, args: string[]) => {
      const out = await new Deno.Command(KUBECTL, {
        args: [
          "--kubeconfig",
          testbed.identities.admin.kubeconfig,
          "--cache-dir",
          cache,
          "explain",
          field === "" ? PLURAL : `${PLURAL}.${field}`,
          ...args,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder();
      return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
    };
    /** `kubectl explain podallocations[.FIELD] ARGS…`; fails unless it exits 0. */
    const explain = async (field: string, ...args: string[]): Promise<string> => {
      const out = await run(cacheDir, field, args);
      assert.equal(
        out.code,
        0,
        `kubectl explain ${
          [field === "" ? PLURAL : `${PLURAL}.${field}`, ...args].join(" ")
        }: ${out.stderr}`,
      );
      return out.stdout;
    };
    try {
      const [[version, schema]] = schemas(await loadCrd());
      const visited = walk(schema);

      await t.step("install the CRD; it becomes Established", async () => {
        await applyManifests(admin, [MANIFESTS.crd]);
        await waitForCrd(admin, CRD);
        // The API server publishes the CRD's OpenAPI a little after it is Established;
        // each try with a cache of its own, so no try reads an earlier one's answer.
        await eventually("kubectl explain to know podallocations", async () => {
          const cache = await Deno.makeTempDir({ prefix: "mbcas-explain-try-" });
          try {
            return (await run(cache, "spec", [])).code === 0;
          } finally {
            await Deno.remove(cache, { recursive: true });
          }
        }, 30_000);
      });

      await t.step(
        "explain of the resource, each object and each list shows its own, its items' and its fields' descriptions",
        async () => {
          const parents = visited.filter((v) =>
            v.named && !EXEMPT.has(v.path) &&
            (v.schema.properties !== undefined || v.schema.items !== undefined)
          );
          assert.ok(parents.length >= 12, `objects and lists: ${parents.map((p) => p.field)}`);
          for (const parent of parents) {
            const shown = await explain(parent.field);
            const where = `kubectl explain ${PLURAL}${parent.field ? `.${parent.field}` : ""}`;
            assert.ok(
              !shown.includes(NO_DESCRIPTION),
              `${where} says ${NO_DESCRIPTION}:\n${shown}`,
            );
            assert.match(shown, new RegExp(`^VERSION:\\s+${version}$`, "m"), where);
            // Its own description, its list items' (kubectl shows both), its fields'.
            const expected = visited.filter((v) =>
              v.description !== undefined && !EXEMPT.has(v.path) &&
              (v.path === parent.path || v.field === parent.field ||
                (v.named && v.field !== "" && parentField(v.field) === parent.field))
            );
            const text = flat(shown);
            for (const v of expected) {
              assert.ok(
                text.includes(flat(v.description!)),
                `${where} does not show the description of ${v.path || "the resource"}: ${
                  JSON.stringify(v.description)
                }\n${shown}`,
              );
            }
          }
        },
      );

      await t.step(
        "explain --recursive lists exactly the fields the YAML describes",
        async () => {
          const shown = await explain("", "--recursive");
          assert.ok(!shown.includes(NO_DESCRIPTION), shown);
          const fields = shown.slice(shown.indexOf("FIELDS:")).split("\n");
          const stack: string[] = [];
          const listed: string[] = [];
          for (const line of fields) {
            const match = /^( +)(\w+)\t</.exec(line);
            if (match === null) continue;
            const depth = match[1].length / 2 - 1;
            stack.length = depth;
            stack.push(match[2]);
            listed.push(stack.join("."));
          }
          const ours = (f: string) => f !== "metadata" && !f.startsWith("metadata.");
          assert.deepEqual(
            listed.filter(ours).sort(),
            visited.filter((v) => v.named && v.field !== "" && ours(v.field)).map((v) => v.field)
              .sort(),
          );
        },
      );

      await t.step("known descriptions, with units, writers and meanings", async () => {
        const cases: [string, RegExp][] = [
          ["spec", /Written by the agent of the node in spec\.nodeName/],
          ["spec.nodeName", /condition NodeAgreement/],
          ["spec.containers", /one entry per container name/],
          ["spec.containers.cpuLimit", /Desired CPU limit, a Kubernetes CPU quantity such as 250m/],
          ["spec.containers.evidence.weight", /CPU request in millicores \(at least 1\)/],
          ["spec.market.computedAt", /RFC 3339 time/],
          ["spec.market.intervalSeconds", /market interval, in seconds/],
          ["status", /written by the controller \(status subresource\)/],
          ["status.state", /Restored: the declared limits are back in force/],
          ["status.infeasible.retryAfter", /--infeasible-backoff-seconds/],
          ["status.conditions.type", /NodeAgreement: the allocation was computed on the node/],
        ];
        for (const [field, pattern] of cases) {
          const shown = flat(await explain(field));
          assert.ok(!shown.includes(NO_DESCRIPTION), `${field}: ${shown}`);
          assert.match(shown, pattern, `kubectl explain ${PLURAL}.${field}`);
        }
      });
    } finally {
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
);
