/**
 * Benchmarks the peers, BullMQ and bee-queue (benchmark-only devDependencies, run by Node), on a
 * private redis-server, and prints a markdown table:
 *
 * - throughput: `--jobs` jobs, one producer, one worker process at concurrency 100, no-op tasks
 *   and 1 ms / 10 ms tasks (median of `--runs`; each run starts fresh processes and warms up),
 * - Redis CPU and commands per job over the no-op runs (INFO cpu / commandstats),
 * - round-trip latency of sequential add-and-wait (p50 / p99, 2000 samples after 200),
 * - Redis memory per pending job (100,000 jobs, no worker).
 *
 *   deno run -A scripts/bench_peers.ts [--jobs 20000] [--runs 3] [--json]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { connect } from "../lib/_redis.ts";
import { RedisNotInstalledError, type RedisServer, startRedisServer } from "./_redis_server.ts";
import {
  nodeVersion,
  PEER_NAMES,
  PEER_SYSTEMS,
  peerLatency,
  peerMemory,
  type PeerSystem,
  type PeerThroughput,
  peerThroughput,
  peerVersion,
} from "./_peers.ts";

const WORKERS = 1;
const CONCURRENCY = 100;
const TASK_MS = [0, 1, 10] as const;
const LATENCY_SAMPLES = 2000;
const MEMORY_JOBS = 100_000;

const USAGE = `usage: deno run -A scripts/bench_peers.ts [--jobs N] [--runs N] [--json]

  --jobs N   jobs per throughput run (default 20000)
  --runs N   throughput runs per setting; the median is reported (default 3)
  --json     print one JSON object instead of markdown`;

interface Params {
  jobs: number;
  runs: number;
  json: boolean;
}

function parseParams(): Params {
  const { values } = parseArgs({
    args: Deno.args,
    strict: true,
    allowPositionals: false,
    options: {
      jobs: { type: "string", default: "20000" },
      runs: { type: "string", default: "3" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const int = (name: "jobs" | "runs"): number => {
    const text = values[name];
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) {
      throw new TypeError(`--${name} must be a positive integer, got ${JSON.stringify(text)}`);
    }
    return n;
  };
  return { jobs: int("jobs"), runs: int("runs"), json: values.json };
}

/** The measures of one peer. */
interface PeerResults {
  version: string;
  /** Runs per task duration (ms), in run order. */
  throughput: Record<string, PeerThroughput[]>;
  latency: { p50Ms: number; p99Ms: number; meanMs: number };
  memory: { bytesPerJob: number };
}

interface Results {
  node: string;
  deno: string;
  redis: string;
  os: string;
  cpus: number;
  date: string;
  params: { jobs: number; runs: number; workers: number; concurrency: number };
  peers: Partial<Record<PeerSystem, PeerResults>>;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

async function bench(params: Params, server: RedisServer): Promise<Results> {
  const log = (line: string) => {
    if (!params.json) console.error(line);
  };
  const conn = await connect(server.url, "streamfutures-bench-peers-info");
  let redis: string;
  try {
    const text = String(await conn.sendCommand(["INFO", "server"]));
    redis = /redis_version:([^\r\n]+)/.exec(text)?.[1] ?? "?";
  } finally {
    conn.close();
  }
  const results: Results = {
    node: (await nodeVersion()) ?? "?",
    deno: Deno.version.deno,
    redis,
    os: `${Deno.build.os} ${Deno.build.arch}`,
    cpus: navigator.hardwareConcurrency,
    date: new Date().toISOString(),
    params: { jobs: params.jobs, runs: params.runs, workers: WORKERS, concurrency: CONCURRENCY },
    peers: {},
  };
  for (const system of PEER_SYSTEMS) {
    const name = PEER_NAMES[system];
    const throughput: Record<string, PeerThroughput[]> = {};
    for (const taskMs of TASK_MS) {
      const runs: PeerThroughput[] = [];
      for (let i = 0; i < params.runs; i++) {
        const r = await peerThroughput(system, {
          url: server.url,
          jobs: params.jobs,
          workers: WORKERS,
          concurrency: CONCURRENCY,
          taskMs,
        });
        runs.push(r);
        log(
          `${name} ${taskMs} ms tasks, run ${i + 1}/${params.runs}: ` +
            `${Math.round(r.jobsPerSec)} jobs/s, ${r.redisCpuUsPerJob.toFixed(1)} µs Redis CPU ` +
            `and ${r.redisCallsPerJob.toFixed(1)} Redis calls per job`,
        );
      }
      throughput[taskMs] = runs;
    }
    const latency = await peerLatency(system, { url: server.url, samples: LATENCY_SAMPLES });
    log(`${name} latency: p50 ${latency.p50Ms.toFixed(2)} ms, p99 ${latency.p99Ms.toFixed(2)} ms`);
    const memory = await peerMemory(system, { url: server.url, jobs: MEMORY_JOBS });
    log(`${name} memory: ${Math.round(memory.bytesPerJob)} bytes per pending job`);
    results.peers[system] = { version: await peerVersion(system), throughput, latency, memory };
  }
  return results;
}

function markdown(r: Results): string {
  const int = (n: number) => Math.round(n).toLocaleString("en-US");
  const peers = PEER_SYSTEMS.filter((s) => r.peers[s]).map((s) => [s, r.peers[s]!] as const);
  const row = (label: string, cell: (p: PeerResults) => string) =>
    `| ${label} | ${peers.map(([, p]) => cell(p)).join(" | ")} |`;
  const { jobs, runs, concurrency } = r.params;
  const lines = [
    `# Peer benchmark: BullMQ and bee-queue`,
    ``,
    `Node ${r.node} (peers), Deno ${r.deno} (driver), redis-server ${r.redis} (private), ${r.os}, ` +
    `${r.cpus} CPUs, ${r.date}`,
    ``,
    `| metric | ${peers.map(([s, p]) => `${PEER_NAMES[s]} ${p.version}`).join(" | ")} |`,
    `| --- | ${peers.map(() => "---").join(" | ")} |`,
    ...TASK_MS.map((taskMs) =>
      row(
        `throughput: ${int(jobs)} ${taskMs ? `${taskMs} ms` : "no-op"} jobs, 1 producer, ` +
          `1 worker process × concurrency ${concurrency} (median of ${runs})`,
        (p) => {
          const rates = p.throughput[taskMs].map((x) => x.jobsPerSec);
          return `**${int(median(rates))} jobs/s** (${rates.map(int).join(", ")})`;
        },
      )
    ),
    row(
      `Redis CPU per job, no-op runs (used_cpu_sys + used_cpu_user, mean)`,
      (p) => `${mean(p.throughput[0].map((x) => x.redisCpuUsPerJob)).toFixed(1)} µs`,
    ),
    row(
      `Redis commands per job, no-op runs (incl. commands inside Lua, mean)`,
      (p) => mean(p.throughput[0].map((x) => x.redisCallsPerJob)).toFixed(1),
    ),
    row(
      `round-trip latency, ${int(LATENCY_SAMPLES)} sequential add + wait: p50`,
      (p) => `**${p.latency.p50Ms.toFixed(2)} ms**`,
    ),
    row(
      `round-trip latency: p99 (mean)`,
      (p) => `${p.latency.p99Ms.toFixed(2)} ms (${p.latency.meanMs.toFixed(2)})`,
    ),
    row(
      `Redis memory per pending job (${int(MEMORY_JOBS)} jobs, used_memory)`,
      (p) => `${int(p.memory.bytesPerJob)} bytes`,
    ),
    ``,
    `Redis commands per job by command (no-op runs, mean):`,
    ``,
    `| command | ${peers.map(([s]) => PEER_NAMES[s]).join(" | ")} |`,
    `| --- | ${peers.map(() => "---").join(" | ")} |`,
    ...commandRows(peers.map(([, p]) => p.throughput[0])),
  ];
  return lines.join("\n");
}

/** One row per command with its mean calls per job for each peer, busiest first. */
function commandRows(runsByPeer: readonly PeerThroughput[][]): string[] {
  const perPeer = runsByPeer.map((runs) => {
    const sums = new Map<string, number>();
    for (const run of runs) {
      for (const [cmd, n] of Object.entries(run.callsByCommand)) {
        sums.set(cmd, (sums.get(cmd) ?? 0) + n / runs.length);
      }
    }
    return sums;
  });
  const commands = new Set(perPeer.flatMap((m) => [...m.keys()]));
  const busiest = (cmd: string) => Math.max(...perPeer.map((m) => m.get(cmd) ?? 0));
  return [...commands]
    .filter((cmd) => busiest(cmd) >= 0.0005)
    .sort((a, b) => busiest(b) - busiest(a))
    .map((cmd) =>
      `| ${cmd.toUpperCase()} | ${
        perPeer.map((m) => (m.has(cmd) ? m.get(cmd)!.toFixed(3) : "–")).join(" | ")
      } |`
    );
}

async function main(): Promise<number> {
  let params: Params;
  try {
    params = parseParams();
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  let server: RedisServer;
  try {
    server = await startRedisServer();
  } catch (error) {
    console.error(error instanceof RedisNotInstalledError ? error.message : error);
    return 1;
  }
  let results: Results;
  try {
    results = await bench(params, server);
  } catch (error) {
    console.error("peer benchmark failed:", error);
    return 1;
  } finally {
    await server.stop();
  }
  console.log(params.json ? JSON.stringify(results, null, 2) : markdown(results));
  return 0;
}

Deno.exit(await main());
