#!/usr/bin/env node
// graphile-worker side of scripts/bench-queue.sh. It mirrors our Rust
// queue-bench (tests/src/bin/queue-bench.rs) so the two can be put side by side,
// measured on the same Postgres in one run:
//
//   burn-down  N no-op jobs enqueued up front (untimed; table truncated,
//              vacuumed and analyzed around the fill, as queue-bench does), then
//              a runner with `workers` concurrency drains them; wall time from
//              starting the runner until every job row is gone.
//   latency    an idle runner (concurrency 1) woken by NOTIFY; time from
//              "addJob resolved" (committed) to "task function entered", one
//              job at a time. Same percentile rule as queue-bench.
//
// Usage: DATABASE_URL=postgres://... node bench.mjs [--jobs N] [--latency-jobs N]
// It drops and recreates its own database, wordup_bench_graphile, on the server
// DATABASE_URL points at, and touches nothing else. stdout carries only RESULT
// lines; progress goes to stderr.

import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import pg from "pg";

// graphile-worker builds an info line per completed job unless this is set,
// even with a silent logger; we measure the queue, not string formatting. It is
// read at module load, hence the dynamic import below.
process.env.NO_LOG_SUCCESS = "1";
const gw = (await import("graphile-worker")).default;

// Keep stdout for RESULT lines only, whatever a dependency might print.
const writeResult = (line) => process.stdout.write(`${line}\n`);
console.log = console.error;
const log = (...args) => console.error("graphile:", ...args);

const DB_NAME = "wordup_bench_graphile";
const SCHEMA = "graphile_worker";
const WORKERS = [1, 4, 16];
const BATCHES = [1, 10];
// Graphile's default is 2s. LISTEN/NOTIFY drives pickup; the poll is only the
// fallback (and the local queue's refetch timer), kept short so no run can sit
// out a 2s timer.
const POLL_INTERVAL_MS = 100;
const ENQUEUE_CHUNK = 5000; // queue-bench's enqueue_many chunk

const { values: args } = parseArgs({
    options: {
        jobs: { type: "string", default: "100000" },
        "latency-jobs": { type: "string", default: "1000" },
    },
});
const positiveInt = (name, raw) => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${raw}`);
    return n;
};
const JOBS = positiveInt("jobs", args.jobs);
const LATENCY_JOBS = positiveInt("latency-jobs", args["latency-jobs"]);

if (!process.env.DATABASE_URL) throw new Error("DATABASE_URL is not set");

const silentLogger = new gw.Logger(() => () => {});

async function recreateDatabase(baseUrl) {
    const admin = new pg.Client({ connectionString: baseUrl });
    await admin.connect();
    try {
        await admin.query(`DROP DATABASE IF EXISTS ${DB_NAME} WITH (FORCE)`);
        await admin.query(`CREATE DATABASE ${DB_NAME}`);
    } finally {
        await admin.end();
    }
    const url = new URL(baseUrl);
    url.pathname = `/${DB_NAME}`;
    return url.toString();
}

function workerPreset(connectionString, extra = {}) {
    return { worker: { connectionString, logger: silentLogger, pollInterval: POLL_INTERVAL_MS, ...extra } };
}

// What `batch` maps to. In queue-bench each worker claims up to `batch` jobs in
// one query and settles them with one complete_many. graphile-worker has no
// per-worker claim size; its batching features (docs: "Performance > Batching")
// are the local queue (the pool locks and fetches `size` jobs in one query and
// hands them out to its workers) plus completeJobBatchDelay (completions issued
// within the window go out as one query; 0 = same tick, no added wait).
// batch=10 turns both on with size 10, i.e. the same jobs per fetch query;
// batch=1 leaves both off (graphile's defaults): one get_job and one
// complete_job query per job. The local queue is per pool, not per worker, so
// with 16 workers graphile warns that size < concurrency; we keep 10 anyway so
// the knob matches the row label.
function batchOptions(batch) {
    return batch > 1 ? { localQueue: { size: batch }, completeJobBatchDelay: 0 } : {};
}

async function startRunner({ connectionString, concurrency, batch, taskList, events }) {
    return gw.run({
        taskList,
        parsedCronItems: [], // no crontab file lookup
        noHandleSignals: true,
        events,
        preset: workerPreset(connectionString, {
            concurrentJobs: concurrency,
            // Graphile's advice: at least 10 or concurrency + 2, whichever is larger.
            maxPoolSize: Math.max(10, concurrency + 2),
            ...batchOptions(batch),
        }),
    });
}

// queue-bench's rule: the sample at rank round(q * (n - 1)).
function percentile(sorted, q) {
    return sorted[Math.min(sorted.length - 1, Math.round(q * (sorted.length - 1)))];
}

const fmt = (x, digits = 3) => x.toFixed(digits);

// Rejects if `promise` takes longer than `ms`; the timer is cancelled either way
// so it neither holds the process open nor fires late.
async function withTimeout(promise, ms, what) {
    const ac = new AbortController();
    const timeout = sleep(ms, undefined, { signal: ac.signal }).then(
        () => {
            throw new Error(`${what} within ${ms / 1000}s`);
        },
        () => {},
    );
    try {
        return await Promise.race([promise, timeout]);
    } finally {
        ac.abort();
    }
}

async function main() {
    const connectionString = await recreateDatabase(process.env.DATABASE_URL);
    log(`database ${DB_NAME} recreated`);
    await gw.runMigrations({ preset: workerPreset(connectionString) });

    const db = new pg.Client({ connectionString });
    await db.connect();
    const utils = await gw.makeWorkerUtils({ preset: workerPreset(connectionString) });

    const remaining = async () =>
        Number((await db.query(`SELECT count(*) AS n FROM ${SCHEMA}._private_jobs`)).rows[0].n);
    // Fresh table files each run so one run's dead tuples don't slow the next.
    const reset = async () => {
        await db.query(`TRUNCATE ${SCHEMA}._private_jobs, ${SCHEMA}._private_job_queues`);
        await db.query(`VACUUM ANALYZE ${SCHEMA}._private_jobs`);
    };

    try {
        for (const workers of WORKERS) {
            for (const batch of BATCHES) {
                await reset();
                const tEnq = performance.now();
                for (let done = 0; done < JOBS; done += ENQUEUE_CHUNK) {
                    const size = Math.min(ENQUEUE_CHUNK, JOBS - done);
                    await utils.addJobs(Array.from({ length: size }, () => ({ identifier: "noop", payload: {} })));
                }
                // Planner stats for the freshly filled table, outside the timing.
                await db.query(`ANALYZE ${SCHEMA}._private_jobs`);
                log(`burn workers=${workers} batch=${batch}: enqueued ${JOBS} in ${fmt((performance.now() - tEnq) / 1000)}s`);

                let completed = 0;
                let failed = 0;
                let allCompleted;
                const allCompletedP = new Promise((resolve) => (allCompleted = resolve));
                const events = new EventEmitter();
                events.on("job:complete", ({ error }) => {
                    if (error) failed++;
                    if (++completed === JOBS) allCompleted();
                });

                let seconds;
                const t0 = performance.now();
                // Counted: graphile opens its pool and checks migrations here,
                // tens of ms (logged below), against seconds of draining.
                const runner = await startRunner({
                    connectionString,
                    concurrency: workers,
                    batch,
                    taskList: { noop: () => {} },
                    events,
                });
                const startupMs = performance.now() - t0;
                try {
                    await Promise.race([
                        allCompletedP,
                        runner.promise.then(() => {
                            throw new Error("runner exited before the queue was drained");
                        }),
                    ]);
                    // job:complete fires before the completion is committed (and with
                    // completeJobBatchDelay it is deferred), so the clock stops when the
                    // rows are actually gone.
                    const deadline = performance.now() + 30_000;
                    while ((await remaining()) > 0) {
                        if (performance.now() > deadline) throw new Error("completed jobs were not deleted within 30s");
                        await sleep(1);
                    }
                    seconds = (performance.now() - t0) / 1000;
                } finally {
                    await runner.stop();
                    await runner.promise.catch((e) => log("runner stopped with error:", e));
                }
                if (failed > 0) throw new Error(`${failed} no-op jobs failed`);
                log(`burn workers=${workers} batch=${batch}: runner start took ${fmt(startupMs, 1)}ms`);
                writeResult(
                    `RESULT graphile burn workers=${workers} batch=${batch} jobs=${JOBS} ` +
                        `seconds=${fmt(seconds)} jobs_per_s=${fmt(JOBS / seconds, 1)}`,
                );
            }
        }

        await reset();
        const events = new EventEmitter();
        const listening = new Promise((resolve) => events.once("pool:listen:success", resolve));
        let onStart = null;
        const runner = await startRunner({
            connectionString,
            concurrency: 1,
            batch: 1,
            // Stamp first thing in the task, before anything else runs.
            taskList: { ping: () => onStart(performance.now()) },
            events,
        });
        try {
            await withTimeout(listening, 30_000, "runner did not start listening");
            // As queue-bench: let the worker reach its wait before the first enqueue.
            await sleep(200);
            const samples = [];
            let clamped = 0;
            for (let i = 0; i < LATENCY_JOBS; i++) {
                const started = new Promise((resolve) => (onStart = resolve));
                await utils.addJob("ping", {});
                const enqueued = performance.now();
                const start = await started;
                // queue-bench's worker completes each job before the next enqueue;
                // graphile completes in the background, so wait for the commit too.
                while ((await remaining()) > 0) await sleep(1);
                // The worker can enter the task before addJob's reply is processed
                // on our side of the event loop; count it as zero wait.
                if (start < enqueued) clamped++;
                samples.push(Math.max(0, start - enqueued));
            }
            if (clamped > 0) log(`latency: ${clamped} samples picked before addJob resolved (counted as 0)`);
            samples.sort((a, b) => a - b);
            writeResult(
                `RESULT graphile latency n=${LATENCY_JOBS} p50_ms=${fmt(percentile(samples, 0.5))} ` +
                    `p95_ms=${fmt(percentile(samples, 0.95))} p99_ms=${fmt(percentile(samples, 0.99))}`,
            );
        } finally {
            await runner.stop();
            await runner.promise.catch((e) => log("runner stopped with error:", e));
        }
    } finally {
        await utils.release();
        await db.end();
    }
}

await main();
