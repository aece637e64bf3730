/**
 * `deno task solve`: clears CPU markets read from stdin.
 *
 * Input is one JSON market, or JSON Lines with one market per line; output is
 * one clearing per market, in order. Invalid input gets a one-line message on
 * stderr naming the line, the bid and the field, and exit code 2. In a JSON
 * Lines batch every good line is still cleared and each bad line's output line
 * is `{"error": "<message>"}`, so output line N always answers input line N.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  clearMarket,
  type Market,
  MarketInputError,
  parseMarketJson,
  settleMarket,
} from "../solver/mod.ts";
import type { Clearing, Settlement } from "../solver/mod.ts";
import { programArgs } from "../config/mod.ts";

const USAGE = `usage: deno task solve [--tiered] [--pretty] < market.json

Reads one market as a JSON object, or many as JSON Lines (one per line), from
stdin and writes the clearing of each to stdout.

  market:   {"capacity": 4000, "surplus": "distribute",
             "bids": [{"id": "ns/pod/container", "weight": 500, "floor": 500,
                       "demand": 1200, "cap": 4000}]}
  clearing: {"allocations": {"ns/pod/container": 1234}, "price": 0.41,
             "contended": true, "oversubscribed": false}

With --tiered, the market's tiers are settled instead (the agent's market):
a bid may add "tier" ("protected" or "elastic") and "usage" (millicores it
uses now), the market "headroom" (millicores the elastic limits leave free),
"elasticYields" (true: the elastic pods run at the lowest CPU weight),
"yieldingCapacity" (millicores, at least "capacity": what yielding elastic
limits may add up to before the headroom; default "capacity") and
"protectedLimit" ("target", the default, or "cap": every protected limit is
its bid's cap); without --tiered those fields are read and ignored.

  settlement: {"guarantees": {"ns/pod/container": 900}, "limits": {...},
               "elasticBudget": 1500, "price": 0.41, "contended": true,
               "oversubscribed": false}

  --tiered  settle tiers: guarantees and limits (default: the plain clearing)
  --pretty  indent a single market's output (JSON Lines output stays one line each)
  --help    show this help`;

/** Runs the CLI on the given arguments and streams; returns the exit code. */
export async function runSolveCli(
  args: string[],
  input: ReadableStream<Uint8Array>,
  output: WritableStream<Uint8Array>,
  errors: WritableStream<Uint8Array>,
): Promise<number> {
  const out = new Writer(output);
  const err = new Writer(errors);
  let pretty = false;
  let solve: (market: Market) => Clearing | Settlement = clearMarket;
  try {
    const { values } = parseArgs({
      args,
      options: {
        pretty: { type: "boolean" },
        tiered: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    });
    if (values.help) {
      await out.line(USAGE);
      return 0;
    }
    pretty = values.pretty ?? false;
    if (values.tiered) solve = settleMarket;
  } catch (error) {
    await err.line(`solve: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }

  const lines = readLines(input);
  const head: string[] = [];
  let first: string | undefined;
  let more = false;
  // Read up to the second non-blank line: one non-blank line is a single
  // market; two or more starting with a one-line JSON object are JSON Lines.
  // (Pulling with next() keeps the generator open for the loops below.)
  for (let next = await lines.next(); !next.done; next = await lines.next()) {
    const text = next.value[1];
    head.push(text);
    if (text.trim() === "") continue;
    if (first !== undefined) {
      more = true;
      break;
    }
    first = text;
  }
  if (first === undefined) {
    await err.line("solve: input: empty, expected a JSON market or JSON Lines of markets");
    return 2;
  }
  if (!more || !isJsonObjectLine(first)) {
    // One market, possibly spread over several lines.
    for await (const [, text] of lines) head.push(text);
    const text = head.join("\n").trim();
    try {
      const result = solve(parseMarketJson(text));
      await out.line(JSON.stringify(result, null, pretty ? 2 : undefined));
      return 0;
    } catch (error) {
      if (!(error instanceof MarketInputError)) throw error;
      const where = text.includes("\n") ? "input" : "line 1";
      await err.line(`solve: ${where}: ${error.message}`);
      return 2;
    }
  }
  let failed = false;
  // JSON Lines: output line N answers input line N (leading blank lines included).
  const answer = async (number: number, text: string): Promise<void> => {
    const result = solveLine(number, text, solve);
    if ("error" in result) {
      failed = true;
      await err.line(`solve: ${result.error}`);
    }
    await out.line(JSON.stringify(result));
  };
  for (let k = 0; k < head.length; k++) await answer(k + 1, head[k]);
  for await (const [number, text] of lines) await answer(number, text);
  return failed ? 2 : 0;
}

function solveLine(
  number: number,
  text: string,
  solve: (market: Market) => Clearing | Settlement,
): Clearing | Settlement | { error: string } {
  if (text.trim() === "") return { error: `line ${number}: empty line, expected a JSON market` };
  try {
    return solve(parseMarketJson(text));
  } catch (error) {
    if (!(error instanceof MarketInputError)) throw error;
    return { error: `line ${number}: ${error.message}` };
  }
}

function isJsonObjectLine(text: string): boolean {
  const trimmed = text.trim();
  if (!trimmed.startsWith("{") || !trimmed.endsWith("}")) return false;
  try {
    JSON.parse(trimmed);
    return true;
  } catch {
    // A line like {"capacity": NaN, ...} is still one market per line.
    return !trimmed.includes("\n") && /"bids"\s*:/.test(trimmed) && /\]\s*}$/.test(trimmed);
  }
}

/** Yields [lineNumber, text] for each line of a byte stream (a final line without newline included). */
async function* readLines(
  input: ReadableStream<Uint8Array>,
): AsyncGenerator<[number, string], void, void> {
  const decoder = new TextDecoder();
  let buffer = "";
  let number = 0;
  for await (const chunk of input) {
    buffer += decoder.decode(chunk, { stream: true });
    let newline = buffer.indexOf("\n");
    while (newline >= 0) {
      yield [++number, buffer.slice(0, newline).replace(/\r$/, "")];
      buffer = buffer.slice(newline + 1);
      newline = buffer.indexOf("\n");
    }
  }
  buffer += decoder.decode();
  if (buffer !== "") yield [++number, buffer.replace(/\r$/, "")];
}

class Writer {
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #encoder = new TextEncoder();
  constructor(stream: WritableStream<Uint8Array>) {
    this.#writer = stream.getWriter();
  }
  async line(text: string): Promise<void> {
    await this.#writer.write(this.#encoder.encode(text + "\n"));
  }
}

if (import.meta.main) {
  const code = await runSolveCli(
    programArgs(),
    Deno.stdin.readable,
    Deno.stdout.writable,
    Deno.stderr.writable,
  );
  Deno.exit(code);
}
