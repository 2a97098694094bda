// support.mjs - what the browser scripts share: the real hotpath and the
// upstream stub on ephemeral loopback ports, a bounded wrk load, headless
// Debian Chromium through playwright-core, and tearing all of it down.
//
// Paths come from the environment the Makefile sets (HOTPATH_ROOT,
// HOTPATH_BUILD, HOTPATH_BIN, HOTPATH_UPSTREAM_BIN; CHROMIUM overrides
// /usr/bin/chromium). playwright-core is handlers/dashboard's dev
// dependency; it drives the installed browser and never downloads one.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const root = resolve(process.env.HOTPATH_ROOT ?? '.');
export const build = resolve(process.env.HOTPATH_BUILD ?? join(root, 'build'));
const bin = process.env.HOTPATH_BIN ?? join(build, 'hotpath');
const stubBin = process.env.HOTPATH_UPSTREAM_BIN ?? join(build, 'hotpath-upstream');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';

// Chromium as root on a machine with no network: no sandbox, no GPU, and
// none of the background requests that would only be refused.
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync'];

export class Stack {
    constructor() {
        this.tmp = mkdtempSync(join(tmpdir(), 'hotpath-browser-'));
        this.procs = [];
        this.browser = null;
    }

    // Start a process and wait for the line that says it listens.
    start(name, file, args, pattern) {
        return new Promise((resolveStart, reject) => {
            const p = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
            p.name = name;
            p.err = '';
            this.procs.push(p);
            let out = '';
            const timer = setTimeout(() => reject(new Error(`${name} did not start: ${out}${p.err}`)),
                10_000);
            p.stdout.on('data', (b) => {
                out += b;
                const m = out.match(pattern);
                if (m && !p.port) {
                    p.port = Number(m[1]);
                    clearTimeout(timer);
                    resolveStart(p);
                }
            });
            p.stderr.on('data', (b) => (p.err += b));
            p.on('exit', (code, sig) => {
                p.exited = { code, sig };
                clearTimeout(timer);
                if (!p.port) reject(new Error(`${name} exited (${code ?? sig}) before listening: ${p.err}`));
            });
        });
    }

    // The stub, then hotpath with `workers` on a config file of its own
    // (no --mode flag: a flag would override the file across reloads).
    async servers({ workers = 2, mode = 'valuetask', advice = {} } = {}) {
        this.stub = await this.start('hotpath-upstream', stubBin, ['--port', '0', '--delay-ms', '2'],
            /listening on \S+:(\d+)/);
        this.config = join(this.tmp, 'hotpath.json');
        this.configJson = {
            listen: { host: '127.0.0.1', port: 0 },
            workers,
            mode,
            upstream: { host: '127.0.0.1', port: this.stub.port },
            advice,
        };
        writeFileSync(this.config, JSON.stringify(this.configJson));
        this.server = await this.start('hotpath', bin, ['--config', this.config],
            /listening on http:\/\/[^:]+:(\d+)/);
        this.base = `http://127.0.0.1:${this.server.port}`;
    }

    // Switch the mode as a user would: rewrite the file, send SIGHUP.
    setMode(mode) {
        this.configJson.mode = mode;
        writeFileSync(this.config, JSON.stringify(this.configJson));
        this.server.kill('SIGHUP');
    }

    // wrk's mixed scenario (plaintext, json, cache hits and misses,
    // upstream): one thread, bounded by -d, stopped by stop() if sooner.
    wrk(seconds, connections) {
        const w = spawn('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '-s',
            join(root, 'loadtest/mixed.lua'), this.base, '--', `browser${Date.now()}`],
        { stdio: 'ignore' });
        w.name = 'wrk';
        w.err = '';
        this.procs.push(w);
        w.on('exit', (code, sig) => (w.exited = { code, sig }));
        return w;
    }

    async page(viewport) {
        const chromium = createRequire(join(root, 'handlers/dashboard/package.json'))('playwright-core').chromium;
        const profile = join(this.tmp, 'chromium-profile');
        mkdirSync(profile);
        // A persistent context, because a fresh, empty --user-data-dir is
        // how this Chromium is known to start cleanly here.
        this.browser = await chromium.launchPersistentContext(profile, {
            executablePath: chromiumPath, headless: true, viewport, args: CHROMIUM_FLAGS,
        });
        return this.browser.pages()[0] ?? (await this.browser.newPage());
    }

    static exited(p, ms) {
        if (p.exited) return Promise.resolve(p.exited);
        return new Promise((res) => {
            const t = setTimeout(() => res(null), ms);
            p.on('exit', (code, sig) => {
                clearTimeout(t);
                res({ code, sig });
            });
        });
    }

    // Close the browser, stop wrk, then hotpath (returns how it exited:
    // {code, sig}, or null when it had to be killed), then the stub.
    async stop() {
        if (this.browser) await this.browser.close().catch(() => {});
        this.browser = null;
        let status = null;
        for (const p of [...this.procs].reverse()) {
            if (p.exited) {
                if (p === this.server) status = p.exited;
                continue;
            }
            p.kill('SIGTERM');
            const st = await Stack.exited(p, 10_000);
            if (!st) p.kill('SIGKILL');
            if (p === this.server) status = st;
        }
        rmSync(this.tmp, { recursive: true, force: true });
        return status;
    }

    // What the processes wrote to stderr, for a failure's message.
    stderr() {
        return this.procs.filter((p) => p.err).map((p) => `--- ${p.name} stderr:\n${p.err.slice(-2000)}`).join('\n');
    }
}
