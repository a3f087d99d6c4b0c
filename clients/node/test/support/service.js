// The real log-pipeline service (v1) for the tests: its release binary started on 127.0.0.1 with a
// fresh logs directory, killed with -9 or stopped, restarted on the same port and directory, and
// read back through what a user sees: the hour files and /metrics.
//
// The binary comes from LOG_PIPELINE_BIN, else ../../target/release/log-pipeline (built by
// `cargo build --release` at the repository's root, or `make test-client`). A missing binary fails
// the tests; they never skip.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const BINARY = process.env.LOG_PIPELINE_BIN ?? resolve(packageRoot, "../../target/release/log-pipeline");
const START_DEADLINE_MS = 20_000;

/** Every service started by this test process, killed if the process ends first. */
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * @typedef {{ server?: object, storage?: object, ingestion?: object, auth?: object, sites?: object }} ServiceConfig
 * @typedef {{ sites?: string, site?: string }} SiteOptions `sites`: a sites file's YAML (then
 *   `sites.file` names it); `site`: the site whose hour files `hourFiles` reads.
 */

export class Service {
  /** @type {import("node:child_process").ChildProcess | undefined} */
  #child;
  #stderr = "";

  /**
   * @param {string} dir
   * @param {ServiceConfig} config sections merged over the test defaults
   * @param {string} [site] the site whose hour files `hourFiles` reads
   */
  constructor(dir, config, site) {
    this.dir = dir;
    this.logsDir = join(dir, "logs");
    /** Where the lines `hourFiles` reads are: a site's root, or the logs directory. */
    this.linesDir = site === undefined ? this.logsDir : join(this.logsDir, "sites", site);
    this.config = config;
    this.port = 0;
  }

  /**
   * Starts the service with `config` (the service's YAML keys; JSON is YAML) in a new directory.
   * @param {ServiceConfig} [config]
   * @param {SiteOptions} [siteOptions]
   */
  static async start(config = {}, { sites, site } = {}) {
    if (!existsSync(BINARY)) {
      throw new Error(
        `no log-pipeline binary at ${BINARY}: build it with \`cargo build --release\` at the repository's root ` +
          "(or run `make test-client`), or point LOG_PIPELINE_BIN at one",
      );
    }
    const dir = mkdtempSync(join(tmpdir(), "log-pipeline-client-"));
    if (sites !== undefined) {
      const file = join(dir, "sites.yaml");
      writeFileSync(file, sites);
      config = { ...config, sites: { file } };
    }
    const service = new Service(dir, config, site);
    await service.#launch();
    return service;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid() {
    return this.#child?.pid;
  }

  /** Kills the process with SIGKILL and waits until it is gone. */
  async kill9() {
    await this.#signal("SIGKILL");
  }

  /** Starts it again on the same port and logs directory. */
  async restart() {
    await this.#launch();
  }

  /** SIGTERM (the service drains and exits 0), then removes its directory. */
  async stop() {
    if (this.#child !== undefined) {
      const code = await this.#signal("SIGTERM");
      if (code !== 0) throw new Error(`log-pipeline exited with ${code} on SIGTERM:\n${this.#stderr}`);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * Every stored line, by hour file (`2025-11-22/14.log.json`), in file order.
   * @returns {Map<string, string[]>}
   */
  hourFiles() {
    const files = new Map();
    if (!existsSync(this.linesDir)) return files;
    for (const day of readdirSync(this.linesDir).filter((name) => /^\d{4}-\d{2}-\d{2}$/.test(name)).sort()) {
      for (const hour of readdirSync(join(this.linesDir, day)).filter((name) => name.endsWith(".log.json")).sort()) {
        const text = readFileSync(join(this.linesDir, day, hour), "utf8");
        files.set(`${day}/${hour}`, text.split("\n").slice(0, -1));
      }
    }
    return files;
  }

  /** Every stored line, hour files in order. */
  storedLines() {
    return [...this.hourFiles().values()].flat();
  }

  /**
   * The sum of a metric's samples whose labels include `labels`, from GET /metrics.
   * @param {string} name
   * @param {Record<string, string>} [labels]
   */
  async metric(name, labels = {}) {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    let sum = 0;
    for (const line of text.split("\n")) {
      const match = /^([a-z_:]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
      if (match === null || match[1] !== name) continue;
      const given = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      if (Object.entries(labels).every(([key, value]) => given[key] === value)) sum += Number(match[3]);
    }
    return sum;
  }

  async #launch() {
    const config = {
      ...this.config,
      server: { addr: `127.0.0.1:${this.port}`, ...this.config.server },
      storage: { logsDir: this.logsDir, analyticsDir: join(this.dir, "analytics"), ...this.config.storage },
      aggregation: { interval: "1h" },
    };
    const file = join(this.dir, "config.yaml");
    writeFileSync(file, JSON.stringify(config));
    this.#stderr = "";
    const child = spawn(BINARY, ["--config", file], { stdio: ["ignore", "ignore", "pipe"] });
    this.#child = child;
    running.add(child);
    child.once("exit", () => running.delete(child));
    this.port = await new Promise((resolvePort, reject) => {
      const timer = setTimeout(() => reject(new Error(`log-pipeline did not listen within ${START_DEADLINE_MS} ms:\n${this.#stderr}`)), START_DEADLINE_MS);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`log-pipeline exited with ${code} before listening:\n${this.#stderr}`));
      });
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk) => {
        this.#stderr += chunk;
        const addr = /"message":"log-pipeline listening","addr":"127\.0\.0\.1:(\d+)"/.exec(this.#stderr);
        if (addr !== null) {
          clearTimeout(timer);
          resolvePort(Number(addr[1]));
        }
      });
    });
  }

  /** @returns {Promise<number | null>} the exit code */
  async #signal(name) {
    const child = this.#child;
    if (child === undefined) return null;
    this.#child = undefined;
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    const exited = new Promise((resolveExit) => child.once("exit", (code) => resolveExit(code)));
    child.kill(name);
    return exited;
  }
}
