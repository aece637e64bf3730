import { join } from "node:path";
import type { CgroupLayout } from "./types.ts";

/**
 * The CPU time a whole cgroup has used, in nanoseconds: `cpuacct.usage` (v1)
 * or `usage_usec` of `cpu.stat` (v2), at `relativePath` (`/` for the root,
 * the whole machine). Null when the file is missing or unreadable (a v2
 * root without `cpu.stat` on older kernels).
 */
export function readCpuUsageNanos(layout: CgroupLayout, relativePath: string): number | null {
  try {
    if (layout.version === 1) {
      const text = Deno.readTextFileSync(join(layout.cpuacctDir, relativePath, "cpuacct.usage"));
      const value = Number(text.trim());
      return Number.isFinite(value) && value >= 0 ? value : null;
    }
    const text = Deno.readTextFileSync(join(layout.cpuDir, relativePath, "cpu.stat"));
    const match = /^usage_usec (\d+)$/m.exec(text);
    return match === null ? null : Number(match[1]) * 1000;
  } catch {
    return null;
  }
}
