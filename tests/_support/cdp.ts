/**
 * A small Chrome DevTools Protocol client for browser tests: starts Debian's
 * headless Chromium in its own process group with a fresh profile, talks CDP
 * over the browser's WebSocket (flattened sessions), and on close stops the
 * browser, kills whatever is left of its process group and removes the
 * profile.
 */

/** Where Debian's `chromium` package installs the browser. */
export const CHROMIUM = "/usr/bin/chromium";

/** Why Chromium cannot run here, or null when `/usr/bin/chromium` exists. */
export function chromiumMissing(): string | null {
  try {
    Deno.statSync(CHROMIUM);
    return null;
  } catch {
    return `${CHROMIUM} not found (run scripts/install_chromium.sh as root)`;
  }
}

/** One CDP event: a message with a method and no id. */
export interface CdpEvent {
  method: string;
  // deno-lint-ignore no-explicit-any -- CDP payloads are loose JSON
  params: any;
  sessionId?: string;
}

interface Pending {
  // deno-lint-ignore no-explicit-any -- CDP results are loose JSON
  resolve: (result: any) => void;
  reject: (error: Error) => void;
  method: string;
}

interface Waiter {
  method: string;
  sessionId?: string;
  resolve: (event: CdpEvent) => void;
}

/** A CDP connection to the browser endpoint; page commands carry a session id. */
export class CdpConnection {
  /** Every event received, in order. */
  readonly events: CdpEvent[] = [];
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  #waiters: Waiter[] = [];
  readonly #closed: Promise<void>;

  private constructor(readonly socket: WebSocket) {
    this.#closed = new Promise((resolve) => {
      socket.addEventListener("close", () => {
        for (const p of this.#pending.values()) {
          p.reject(new Error(`CDP connection closed before ${p.method} answered`));
        }
        this.#pending.clear();
        resolve();
      });
    });
    socket.addEventListener("message", (e) => this.#receive(String(e.data)));
  }

  /** Opens a connection to a `ws://` DevTools URL. */
  static async connect(url: string, timeoutMs = 10_000): Promise<CdpConnection> {
    const socket = new WebSocket(url);
    const connection = new CdpConnection(socket);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no WebSocket to ${url} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        socket.addEventListener("open", () => resolve(), { once: true });
        socket.addEventListener("error", () => reject(new Error(`WebSocket to ${url} failed`)), {
          once: true,
        });
      });
    } catch (error) {
      await connection.close();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    return connection;
  }

  #receive(data: string): void {
    const message = JSON.parse(data);
    if (typeof message.id === "number") {
      const pending = this.#pending.get(message.id);
      if (!pending) return;
      this.#pending.delete(message.id);
      if (message.error) {
        pending.reject(
          new Error(`${pending.method}: ${message.error.message} (${message.error.code})`),
        );
      } else pending.resolve(message.result);
      return;
    }
    const event: CdpEvent = {
      method: message.method,
      params: message.params,
      sessionId: message.sessionId,
    };
    this.events.push(event);
    const [match, rest] = [
      this.#waiters.filter((w) => w.method === event.method && w.sessionId === event.sessionId),
      this.#waiters.filter((w) => !(w.method === event.method && w.sessionId === event.sessionId)),
    ];
    this.#waiters = rest;
    for (const w of match) w.resolve(event);
  }

  /** Sends a command and resolves with its result (rejects on a CDP error). */
  // deno-lint-ignore no-explicit-any -- CDP results are loose JSON
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<any> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      if (this.socket.readyState !== WebSocket.OPEN) {
        reject(new Error(`CDP connection not open for ${method}`));
        return;
      }
      this.#pending.set(id, { resolve, reject, method });
      this.socket.send(JSON.stringify({ id, method, params, sessionId }));
    });
  }

  /** The next event `method` (of `sessionId`); register before the command that causes it. */
  waitFor(method: string, sessionId?: string, timeoutMs = 15_000): Promise<CdpEvent> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const event = new Promise<CdpEvent>((resolve) => {
      this.#waiters.push({ method, sessionId, resolve });
    });
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${method} within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([event, timeout]).finally(() => clearTimeout(timer));
  }

  /** Closes the socket and waits until it is closed. */
  async close(): Promise<void> {
    if (
      this.socket.readyState === WebSocket.CONNECTING || this.socket.readyState === WebSocket.OPEN
    ) {
      this.socket.close();
    }
    await this.#closed;
  }
}

/** A page (tab) attached with a flattened session. */
export class CdpPage {
  private constructor(
    readonly connection: CdpConnection,
    readonly targetId: string,
    readonly sessionId: string,
  ) {}

  /** Opens a blank page and enables Runtime, Log and Page events on it. */
  static async open(connection: CdpConnection): Promise<CdpPage> {
    const { targetId } = await connection.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await connection.send("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    const page = new CdpPage(connection, targetId, sessionId);
    await page.send("Runtime.enable");
    await page.send("Log.enable");
    await page.send("Page.enable");
    return page;
  }

  /** A command in this page's session. */
  // deno-lint-ignore no-explicit-any -- CDP results are loose JSON
  send(method: string, params: Record<string, unknown> = {}): Promise<any> {
    return this.connection.send(method, params, this.sessionId);
  }

  /** Navigates to `url` and waits for its load event. */
  async navigate(url: string, timeoutMs = 15_000): Promise<void> {
    const loaded = this.connection.waitFor("Page.loadEventFired", this.sessionId, timeoutMs);
    const result = await this.send("Page.navigate", { url });
    if (result.errorText) {
      loaded.catch(() => {});
      throw new Error(`navigation to ${url} failed: ${result.errorText}`);
    }
    await loaded;
  }

  /** Evaluates `expression` in the page and returns its value (JSON-serialisable). */
  async evaluate<T>(expression: string): Promise<T> {
    const result = await this.send("Runtime.evaluate", {
      expression,
      returnByValue: true,
      awaitPromise: true,
    });
    if (result.exceptionDetails) {
      throw new Error(
        `evaluation threw: ${
          result.exceptionDetails.exception?.description ?? result.exceptionDetails.text
        }`,
      );
    }
    return result.result.value as T;
  }

  /** This page's events so far. */
  events(): CdpEvent[] {
    return this.connection.events.filter((e) => e.sessionId === this.sessionId);
  }

  /**
   * Console errors and uncaught exceptions of this page so far:
   * Runtime.exceptionThrown, Log.entryAdded at level error and
   * Runtime.consoleAPICalled of type error, each as one line.
   */
  errors(): string[] {
    const out: string[] = [];
    for (const e of this.events()) {
      if (e.method === "Runtime.exceptionThrown") {
        const d = e.params.exceptionDetails;
        out.push(`exception: ${d?.exception?.description ?? d?.text ?? JSON.stringify(d)}`);
      } else if (e.method === "Log.entryAdded" && e.params.entry?.level === "error") {
        out.push(`log error: ${e.params.entry.text} ${e.params.entry.url ?? ""}`.trim());
      } else if (e.method === "Runtime.consoleAPICalled" && e.params.type === "error") {
        const args = (e.params.args ?? []).map((a: { value?: unknown; description?: string }) =>
          a.value ?? a.description
        );
        out.push(`console.error: ${args.join(" ")}`);
      }
    }
    return out;
  }

  /** A PNG of the whole page, `width` CSS pixels wide. */
  async screenshot(width = 1000): Promise<Uint8Array> {
    // Measure in a small window, so that an earlier, taller one does not count.
    await this.send("Emulation.setDeviceMetricsOverride", {
      width,
      height: 200,
      deviceScaleFactor: 1,
      mobile: false,
    });
    const height = await this.evaluate<number>(
      "Math.ceil(document.documentElement.scrollHeight)",
    );
    await this.send("Emulation.setDeviceMetricsOverride", {
      width,
      height,
      deviceScaleFactor: 1,
      mobile: false,
    });
    const { data } = await this.send("Page.captureScreenshot", {
      format: "png",
      captureBeyondViewport: true,
    });
    return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  }
}

/** The process ids whose command line mentions `needle` (e.g. a profile directory). */
export function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (cmdline.includes(needle)) pids.push(Number(entry.name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The live (not zombie) processes of process group `pgid`. */
export function processGroupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(pgrp) === pgid && state !== "Z") pids.push(Number(entry.name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** A running headless Chromium with a CDP connection to its browser endpoint. */
export interface Browser {
  /** The connection to the browser target. */
  connection: CdpConnection;
  /** Process id of the browser, also its process group id. */
  pid: number;
  /** The fresh profile directory (removed by close). */
  userDataDir: string;
  /** What Chromium wrote to stderr so far. */
  stderr(): string;
  /** Stops the browser and every process of its group, and removes the profile. */
  close(): Promise<void>;
}

const DEVTOOLS = /DevTools listening on (ws:\/\/\S+)/;

/**
 * Starts headless Chromium (`--remote-debugging-port=0`, a new profile in a
 * temporary directory, in a process group of its own) and connects to the
 * DevTools URL it prints on stderr.
 */
export async function launchChromium(timeoutMs = 20_000): Promise<Browser> {
  const userDataDir = await Deno.makeTempDir({ prefix: "mbcas-chromium-" });
  const child = new Deno.Command(CHROMIUM, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
      `--user-data-dir=${userDataDir}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    detached: true, // setsid: the browser's pid is its process group id
  }).spawn();

  let stderrText = "";
  let announce: (url: string) => void = () => {};
  const announced = new Promise<string>((resolve) => (announce = resolve));
  const pump = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      if (stderrText.length < 200_000) stderrText += decoder.decode(chunk, { stream: true });
      const m = DEVTOOLS.exec(stderrText);
      if (m) announce(m[1]);
    }
  })();

  let connection: CdpConnection | undefined;
  const close = async () => {
    if (connection) {
      await connection.send("Browser.close").catch(() => {});
      await connection.close();
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 5_000))),
    ]);
    clearTimeout(timer);
    // Whatever is left of the group (renderers, zygotes), and the browser if it hung.
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      // no process left in the group
    }
    if (!exited) await child.status;
    await pump.catch(() => {});
    const left = () => [...processGroupMembers(child.pid), ...processesMentioning(userDataDir)];
    for (let i = 0; i < 50 && left().length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await Deno.remove(userDataDir, { recursive: true }).catch(() => {});
  };

  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const url = await Promise.race([
      announced,
      child.status.then((s) => {
        throw new Error(
          `chromium exited (code ${s.code}) before DevTools listened:\n${stderrText}`,
        );
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no DevTools URL within ${timeoutMs} ms:\n${stderrText}`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    connection = await CdpConnection.connect(url);
  } catch (error) {
    await close();
    throw error;
  }
  return {
    connection,
    pid: child.pid,
    userDataDir,
    stderr: () => stderrText,
    close,
  };
}
