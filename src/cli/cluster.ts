/**
 * `deno task cluster`: starts a real single-node Kubernetes cluster on this
 * machine (control plane, containerd 2.x with runc, kubelet, kube-scheduler,
 * kube-proxy, CoreDNS), builds MBCAS's local images and imports them into
 * the node, prints the kubeconfig and how to deploy MBCAS onto it, and on
 * Ctrl-C (or SIGTERM) tears everything down and restores the machine.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { programArgs } from "../config/mod.ts";
import {
  buildLocalImages,
  ensureNodeBinaries,
  type LocalCluster,
  localClusterMissing,
  startLocalCluster,
} from "../cluster/mod.ts";

const USAGE = `usage: deno task cluster [--no-images] [--no-cpu-quota]

Starts a real single-node Kubernetes v1.35 cluster on this machine (needs root):
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd 2.x
with runc, the CNI bridge plugin, the kubelet, kube-proxy and CoreDNS, all on
the bridge mbcas0 (10.213.0.0/16, no route off the machine). Builds the local
images (mbcas-controller:local, mbcas-agent:local, mbcas-lab:local) and imports
them into the node. Prints the kubeconfig; Ctrl-C stops everything and restores
the machine (processes, containers, mounts, cgroups, links, iptables, sysctls).

  --no-images      do not build and import the MBCAS images (the pause image still is)
  --no-cpu-quota   the kubelet enforces no CPU limits (cpuCFSQuota: false)
  -h, --help       this text`;

if (import.meta.main) {
  let values: { "no-images"?: boolean; "no-cpu-quota"?: boolean; help?: boolean };
  try {
    values = parseArgs({
      args: programArgs(),
      options: {
        "no-images": { type: "boolean" },
        "no-cpu-quota": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    console.error(`cluster: ${(error as Error).message}\n${USAGE}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const missing = localClusterMissing();
  if (missing !== null) {
    console.error(`cluster: ${missing}`);
    Deno.exit(1);
  }
  const log = (line: string) => console.error(line);
  const imagesDir = await Deno.makeTempDir({ prefix: "mbcas-images-" });
  let stopRequested = false;
  const early = () => {
    stopRequested = true;
  };
  Deno.addSignalListener("SIGINT", early);
  Deno.addSignalListener("SIGTERM", early);
  let cluster: LocalCluster | undefined;
  let failure: Error | null = null;
  try {
    // The node's binaries first: the pause image is built from one of them.
    await ensureNodeBinaries(log);
    const images = await buildLocalImages(imagesDir, { log, pauseOnly: values["no-images"] });
    cluster = await startLocalCluster({
      log,
      cpuCfsQuota: !values["no-cpu-quota"],
      imageArchives: images.map((i) => i.archive),
    });
  } catch (error) {
    failure = error as Error;
  } finally {
    await Deno.remove(imagesDir, { recursive: true }).catch(() => {});
    Deno.removeSignalListener("SIGINT", early);
    Deno.removeSignalListener("SIGTERM", early);
  }
  if (cluster === undefined) {
    console.error(`cluster: start failed: ${failure?.message}`);
    Deno.exit(1);
  }
  const running: LocalCluster = cluster;
  let stopping = false;
  const stop = async () => {
    // deno task passes the terminal's Ctrl-C on too: the second signal is the same request.
    if (stopping) return;
    stopping = true;
    console.error("\nstopping the local cluster ...");
    await running.stop();
    Deno.exit(0);
  };
  if (stopRequested) await stop();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  const kubeconfig = cluster.kubeconfig;
  console.log(
    `local cluster ready in ${
      (cluster.startupMs / 1000).toFixed(1)
    } s: node ${cluster.plan.nodeName}, API server ${cluster.testbed.url}

  export KUBECONFIG=${kubeconfig}
  export PATH=${cluster.bin}:$PATH     # kubectl, ctr
  kubectl get nodes -o wide

Deploy MBCAS from the shipped manifests (images already on the node):
  ./scripts/deno task deploy -- --kubeconfig ${kubeconfig} --overlay deploy/overlays/local --skip-images

Ctrl-C stops everything, restores the machine and removes ${cluster.plan.dir}`,
  );
}
