/**
 * `deno task demo` and `deno task lab-bench` refuse bad options with one line
 * naming the option and its value, and exit 2, before touching the machine.
 */
import assert from "node:assert/strict";
import { taskRunFlags } from "../_support/task_flags.ts";

const CLIS = {
  demo: new URL("../../src/cli/demo.ts", import.meta.url).pathname,
  "lab-bench": new URL("../../src/cli/lab_bench.ts", import.meta.url).pathname,
};

async function run(task: keyof typeof CLIS, args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...taskRunFlags(task), CLIS[task], ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
}

const cases: [keyof typeof CLIS, string[], RegExp][] = [
  ["demo", ["--duration", "5"], /^demo: --duration "5": must be at least 30$/],
  ["demo", ["--duration", "abc"], /^demo: --duration "abc": must be a number of seconds$/],
  ["demo", ["--scenario", "nope"], /^demo: --scenario "nope": must be one of mixed, spike$/],
  ["demo", ["--policy", "vpaa"], /^demo: --policy "vpaa": must be mbcas, static, none or vpa$/],
  ["demo", ["--bogus"], /^demo: Unknown option '--bogus'/],
  ["lab-bench", ["--duration", "60"], /^lab-bench: --duration "60": must be at least 120/],
  [
    "lab-bench",
    ["--policies", "static,foo"],
    /^lab-bench: --policies "static,foo": "foo" is not one of static,none,vpa,mbcas$/,
  ],
];

for (const [task, args, message] of cases) {
  Deno.test(`${task} ${args.join(" ")}: exit 2 naming the option`, async () => {
    const { code, stderr } = await run(task, args);
    assert.equal(code, 2);
    assert.match(stderr.split("\n")[0], message);
  });
}

Deno.test("demo --help and lab-bench --help print the options and exit 0", async () => {
  for (const task of ["demo", "lab-bench"] as const) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", ...taskRunFlags(task), CLIS[task], "--help"],
      stdout: "piped",
    }).output();
    assert.equal(out.code, 0);
    assert.match(new TextDecoder().decode(out.stdout), /--duration/);
  }
});
