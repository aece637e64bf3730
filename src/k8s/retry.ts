/**
 * Retries for optimistic concurrency: re-read, re-apply, re-write on 409.
 *
 * @module
 */
import { statusCode } from "./_shared.ts";

/**
 * Runs `attempt` until it does not fail with 409 Conflict, up to `times`
 * attempts. `attempt` must read the latest object itself each time.
 */
export async function retryOnConflict<T>(attempt: () => Promise<T>, times = 5): Promise<T> {
  for (let i = 1;; i++) {
    try {
      return await attempt();
    } catch (error) {
      if (statusCode(error) !== 409 || i >= times) throw error;
      await new Promise((r) => setTimeout(r, 10 * i));
    }
  }
}
