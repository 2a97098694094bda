// dashboard.mjs - /dashboard in a real browser: Debian's Chromium, headless,
// driven by playwright-core (handlers/dashboard's dev dependency; it never
// downloads a browser), against the real hotpath (2 workers) and the real
// upstream stub on ephemeral loopback ports, under a bounded wrk load.
//
// Checks: the page is served as HTML; its three charts render (a canvas
// each, two series, samples with requests in them, pixels drawn); the mode
// and the layers table (with the advisor's verdicts) are shown; after the
// config file is rewritten and SIGHUP sent, the new mode shows within a few
// seconds, with the switch marked on the charts, and the allocations per
// request the page plots rise (task mode allocates where valuetask mode
// does not). Keeps a full-page screenshot under $HOTPATH_BUILD/dashboard/.
//
//   HOTPATH_BIN=build/hotpath HOTPATH_UPSTREAM_BIN=build/hotpath-upstream \
//   HOTPATH_ROOT=. HOTPATH_BUILD=build node tests/browser/dashboard.mjs
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(process.env.HOTPATH_ROOT ?? '.');
const build = resolve(process.env.HOTPATH_BUILD ?? join(root, 'build'));
const bin = process.env.HOTPATH_BIN ?? join(build, 'hotpath');
const stubBin = process.env.HOTPATH_UPSTREAM_BIN ?? join(build, 'hotpath-upstream');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const { chromium } = createRequire(join(root, 'handlers/dashboard/package.json'))('playwright-core');

const DEADLINE_MS = 60_000; // the whole test, whatever hangs
const MODE_SHOWN_MS = 5_000; // the page polls once a second

const started = Date.now();
const tmp = mkdtempSync(join(tmpdir(), 'hotpath-dashboard-'));
const procs = [];
let browser = null;
let passed = 0;

function ok(what) {
    passed++;
    console.log(`ok ${passed} - ${what}`);
}
function check(cond, what, detail) {
    if (!cond) throw new Error(`${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
    ok(what);
}

// Start a process and wait for the line that says it listens; returns it
// with .port.
function start(name, file, args, pattern) {
    return new Promise((resolveStart, reject) => {
        const p = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        p.name = name;
        p.err = '';
        procs.push(p);
        let out = '';
        const timer = setTimeout(() => reject(new Error(`${name} did not start: ${out}${p.err}`)), 10_000);
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

function exited(p, ms) {
    if (p.exited) return Promise.resolve(p.exited);
    return new Promise((res) => {
        const t = setTimeout(() => res(null), ms);
        p.on('exit', (code, sig) => {
            clearTimeout(t);
            res({ code, sig });
        });
    });
}

async function cleanup() {
    if (browser) await browser.close().catch(() => {});
    for (const p of procs) if (!p.exited) p.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
}

async function main() {
    const stub = await start('hotpath-upstream', stubBin, ['--port', '0', '--delay-ms', '2'],
        /listening on \S+:(\d+)/);
    const config = join(tmp, 'hotpath.json');
    const writeConfig = (mode) => writeFileSync(config, JSON.stringify({
        listen: { host: '127.0.0.1', port: 0 },
        workers: 2,
        mode,
        upstream: { host: '127.0.0.1', port: stub.port },
        // A short window and a low hot threshold, so the advisor's verdicts
        // follow this short, modest load.
        advice: { window_s: 2, hot_rate: 500, sync_share_pct: 90 },
    }));
    writeConfig('valuetask');
    const server = await start('hotpath', bin, ['--config', config], /listening on http:\/\/[^:]+:(\d+)/);
    const base = `http://127.0.0.1:${server.port}`;

    // The load: wrk's mixed scenario (plaintext, json, cache hits and
    // misses, upstream), one thread, 4 connections, bounded by -d.
    const wrk = spawn('wrk', ['-t1', '-c4', '-d40s', '-s', join(root, 'loadtest/mixed.lua'), base,
        '--', `dash${Date.now()}`], { stdio: 'ignore' });
    wrk.name = 'wrk';
    procs.push(wrk);
    wrk.on('exit', (code, sig) => (wrk.exited = { code, sig }));

    const profile = join(tmp, 'chromium-profile');
    mkdirSync(profile);
    browser = await chromium.launchPersistentContext(profile, {
        executablePath: chromiumPath,
        headless: true,
        viewport: { width: 1440, height: 1000 },
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = browser.pages()[0] ?? (await browser.newPage());
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));

    const res = await page.goto(`${base}/dashboard`);
    check(res.status() === 200 && res.headers()['content-type'].startsWith('text/html'),
        'GET /dashboard answers 200 text/html', [res.status(), res.headers()['content-type']]);

    // Three samples: two rates, each over a second of load.
    await page.waitForFunction(() => window.hotpathDashboard?.hist.x.length >= 3, null, { timeout: 15_000 });
    const charts = await page.evaluate(() => Object.entries(window.hotpathDashboard.charts).map(([k, u]) => ({
        name: k,
        series: u.series.length,
        points: u.data[1].length,
        positive: u.data[1].filter((v) => v > 0).length,
    })));
    check(charts.length === 3 && charts.every((c) => c.series === 2 && c.points >= 2),
        'three charts, each with time and one series, each with samples', charts);
    check(charts.find((c) => c.name === 'req').positive >= 2, 'the req/s chart plots the load', charts);
    // The canvases: one per chart, with pixels drawn on them.
    const canvases = await page.$$eval('.chart canvas', (cs) => cs.map((c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let drawn = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i]) drawn++;
        return { w: c.width, h: c.height, drawn };
    }));
    check(canvases.length === 3 && canvases.every((c) => c.w > 100 && c.drawn > 1000),
        'each chart canvas is sized and drawn on', canvases);

    const mode = () => page.textContent('#mode');
    check((await mode()) === 'valuetask', 'the mode is shown: valuetask', await mode());
    const layers = await page.$$eval('#layers tr', (trs) => trs.map((tr) => ({
        name: tr.querySelector('td.name')?.textContent,
        verdict: tr.querySelector('.verdict')?.textContent,
    })));
    const names = layers.map((l) => l.name);
    check(['server_headers', 'request_id', 'metrics', 'plaintext', 'cache.get', 'upstream.request']
        .every((n) => names.includes(n)) && layers.every((l) => ['valuetask', 'task', 'either'].includes(l.verdict)),
    'the layers table lists the chain with the advisor\'s verdicts', layers);
    const routes = await page.$$eval('#routes td.name', (tds) => tds.map((t) => t.textContent));
    check(routes.includes('/plaintext') && routes.includes('/cache/'), 'the routes table lists the load\'s routes', routes);

    // Switch the mode as a user would: rewrite the file, SIGHUP.
    const before = await page.evaluate(() => window.hotpathDashboard.hist.x.length);
    writeConfig('task');
    const sent = Date.now();
    server.kill('SIGHUP');
    await page.waitForFunction(() => document.getElementById('mode').textContent === 'task', null,
        { timeout: MODE_SHOWN_MS });
    const shownMs = Date.now() - sent;
    ok(`the page shows the new mode, task, ${(shownMs / 1000).toFixed(1)} s after SIGHUP`);
    check(/since \d\d:\d\d:\d\d/.test(await page.textContent('#mode-since')), 'and when it changed',
        await page.textContent('#mode-since'));

    // Three samples in task mode, so the charts show both sides.
    await page.waitForFunction((n) => {
        const h = window.hotpathDashboard.hist;
        return h.x.length >= n + 3 && h.mode.slice(-3).every((m) => m === 'task');
    }, before, { timeout: 10_000 });
    const after = await page.evaluate(() => {
        const { hist, changes } = window.hotpathDashboard;
        const mean = (m) => {
            const v = hist.apr.filter((a, i) => hist.mode[i] === m && a != null);
            return v.reduce((s, a) => s + a, 0) / v.length;
        };
        return { changes, vt: mean('valuetask'), task: mean('task') };
    });
    check(after.changes.length === 1 && after.changes[0].mode === 'task', 'the switch is marked on the time axis', after.changes);
    // Task mode allocates a task per layer that returned a valuetask: at
    // least 3 more per synchronous request of this mix.
    check(after.task > after.vt + 2, 'allocations per request rise in task mode (the page\'s figures)', after);
    check(errors.length === 0, 'no script error on the page', errors);

    const shot = join(build, 'dashboard', 'dashboard.png');
    mkdirSync(join(build, 'dashboard'), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    await browser.close();
    browser = null;

    wrk.kill('SIGTERM');
    server.kill('SIGTERM');
    const st = await exited(server, 10_000);
    check(st && st.code === 0, 'hotpath drains and exits 0', st);
    stub.kill('SIGTERM');
    await exited(stub, 5_000);
    await exited(wrk, 5_000);
}

const timer = setTimeout(async () => {
    console.error(`browser test: over ${DEADLINE_MS / 1000} s, stopping`);
    await cleanup();
    process.exit(1);
}, DEADLINE_MS);

try {
    await main();
    console.log(`browser test: ${passed} passed, 0 failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
} catch (e) {
    console.error(`not ok - ${e.message}`);
    for (const p of procs) if (p.err) console.error(`--- ${p.name} stderr:\n${p.err.slice(-2000)}`);
    console.log(`browser test: ${passed} passed, 1 failed`);
    process.exitCode = 1;
} finally {
    clearTimeout(timer);
    await cleanup();
}
