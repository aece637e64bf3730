/**
 * `deno task demo`: MBCAS end to end on this machine, on real CPU. Starts the
 * lab on the local real node (src/cluster: control plane, containerd, the
 * kubelet, kube-proxy, CoreDNS; the scenario's pods as containers of the lab
 * image; MBCAS deployed as pods from the shipped manifests), runs a scenario,
 * shows a live table each second (usage, throttling, demand, the market's
 * limit and guarantee, and kernel limit per pod, and the node's price), then tears everything down,
 * restores the machine and writes `report.html`.
 *
 * Needs root, the node's Debian packages and Go or a cached build of the
 * node's binaries (scripts/build_node.sh).
 *
 * @module
 */
import { z } from "zod";
import { parseCliOptions } from "./_options.ts";
import { renderReport } from "../lab/report.ts";
import { labAllocatable, labMissing, type LabSecond, runLab } from "../lab/run.ts";
import { buildScenario, SCENARIOS } from "../lab/scenario.ts";
import { programArgs } from "../config/mod.ts";

const USAGE = `usage: deno task demo [--duration SECONDS] [--scenario ${
  SCENARIOS.join("|")
}] [--quick]
                      [--policy mbcas|static|none|vpa] [--seed N] [--report FILE]

  --duration S    length of the run in seconds (default 180; 30..3600)
  --quick         a 60-second run (overrides --duration)
  --scenario S    mixed (default): latency service with load steps, bursty service, batch jobs,
                  idle pod; spike: an idle service whose load steps up, then stops,
                  next to an elastic batch job
  --policy P      mbcas (default), static (limits as declared), none (CFS shares only),
                  vpa (VPA-style recommender, applied every minute)
  --seed N        seed of the workloads' random schedules (default 1)
  --report FILE   where to write the HTML report (default report.html)
  --no-live       print one line per second instead of redrawing the table`;

const optionsSchema = z.object({
  duration: z.coerce.number({ error: "must be a number of seconds" }).int("must be whole seconds")
    .min(30, "must be at least 30").max(3600, "must be at most 3600"),
  scenario: z.enum(SCENARIOS, { error: `must be one of ${SCENARIOS.join(", ")}` }),
  policy: z.enum(["mbcas", "static", "none", "vpa"], {
    error: "must be mbcas, static, none or vpa",
  }),
  seed: z.coerce.number({ error: "must be a number" }).int("must be a whole number").min(0),
  report: z.string().min(1, "must name a file"),
  "no-live": z.boolean(),
});

function table(second: LabSecond, duration: number): string {
  const fmt = (v: number | null) => (v === null ? "-" : `${v}m`);
  const lines = [
    `MBCAS lab  t=${second.t}/${duration}s  price=${
      second.price === null ? "-" : second.price.toPrecision(3)
    }  kernel resizes=${second.resizes}`,
    "POD        USAGE   THROTTLED  DEMAND  MARKET LIMIT  GUARANTEE  LIMIT",
  ];
  for (const s of second.samples) {
    lines.push(
      `${s.pod.padEnd(10)} ${fmt(s.usageMillicores).padStart(6)}  ${
        `${Math.round(s.throttledRatio * 100)}%`.padStart(9)
      }  ${fmt(s.demandMillicores).padStart(6)}  ${fmt(s.allocationMillicores).padStart(12)}  ${
        fmt(s.guaranteeMillicores ?? null).padStart(9)
      }  ${fmt(s.limitMillicores).padStart(5)}`,
    );
  }
  return lines.join("\n");
}

async function main(args: string[]): Promise<number> {
  const options = parseCliOptions(
    "demo",
    args,
    {
      duration: { type: "string", default: "180" },
      quick: { type: "boolean", default: false },
      scenario: { type: "string", default: "mixed" },
      policy: { type: "string", default: "mbcas" },
      seed: { type: "string", default: "1" },
      report: { type: "string", default: "report.html" },
      "no-live": { type: "boolean", default: false },
    },
    optionsSchema,
    USAGE,
    (values) => ({ ...values, duration: values.quick ? "60" : values.duration }),
  );
  if (typeof options === "number") return options;
  const missing = labMissing();
  if (missing !== null) {
    console.error(`demo: the lab cannot run here: ${missing}`);
    return 1;
  }
  const scenario = buildScenario(options.scenario, options.duration, labAllocatable());
  const abort = new AbortController();
  const onSignal = () => {
    if (abort.signal.aborted) return; // `deno task` passes the terminal's Ctrl-C on as well
    console.error("\ndemo: stopping (Ctrl-C); tearing down and writing the report");
    abort.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const live = Deno.stdout.isTerminal() && !options["no-live"];
  console.error(
    `demo: scenario ${scenario.name} (${scenario.description}), policy ${options.policy}, ${options.duration} s, node ${scenario.allocatableMillicores}m`,
  );
  try {
    const run = await runLab({
      scenario,
      policy: options.policy,
      seed: options.seed,
      signal: abort.signal,
      log: (line) => console.error(`demo: ${line}`),
      onSecond: (second) => {
        const text = table(second, options.duration);
        console.log(live ? `\x1b[H\x1b[2J${text}` : `${text}\n`);
      },
    });
    await Deno.writeTextFile(options.report, renderReport(run));
    const path = await Deno.realPath(options.report);
    console.error(`demo: report written to ${path} (open it in a browser)`);
    return 0;
  } catch (error) {
    console.error(`demo: ${(error as Error).stack ?? error}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) Deno.exit(await main(programArgs()));
