/**
 * `deno task explain -- --node NAME [--kubeconfig FILE]`: prints a node's
 * current CPU market as a table (see `src/agent/explain.ts`).
 *
 * @module
 */
import { parseArgs } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { formatMarketTable } from "../agent/explain.ts";
import { GROUP, PLURAL, type PodAllocation, validatePodAllocation, VERSION } from "../api/mod.ts";
import { errorMessage, KubeConfigError, loadKubeConfig, makeApiClient } from "../k8s/mod.ts";
import { programArgs } from "../config/mod.ts";

if (import.meta.main) {
  let values;
  try {
    values = parseArgs({
      args: programArgs(),
      options: {
        node: { type: "string" },
        kubeconfig: { type: "string" },
        help: { type: "boolean" },
      },
    }).values;
  } catch (error) {
    console.error(`explain: ${(error as Error).message}`);
    Deno.exit(2);
  }
  if (values.help || !values.node) {
    (values.help ? console.log : console.error)(
      "usage: deno task explain -- --node NAME [--kubeconfig FILE]",
    );
    Deno.exit(values.help ? 0 : 2);
  }
  try {
    const kc = loadKubeConfig({ kubeconfig: values.kubeconfig });
    const custom = makeApiClient(kc, k8s.CustomObjectsApi);
    const list = await custom.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      fieldSelector: `spec.nodeName=${values.node}`,
    }) as { items: unknown[] };
    const valid: PodAllocation[] = [];
    for (const item of list.items) {
      const v = validatePodAllocation(item);
      if (v.ok) valid.push(v.value);
      else console.error(`explain: skipping a malformed PodAllocation: ${v.error}`);
    }
    console.log(formatMarketTable(values.node, valid));
  } catch (error) {
    console.error(
      `explain: ${error instanceof KubeConfigError ? error.message : errorMessage(error)}`,
    );
    Deno.exit(1);
  }
}
