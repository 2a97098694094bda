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
//   HOTPATH_ROOT=. HOTPATH_BUILD=build node tests/browser/dashboard.mjs
// (make test-browser runs it so.)
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { Stack, build } from './support.mjs';

const DEADLINE_MS = 60_000; // the whole test, whatever hangs
const MODE_SHOWN_MS = 5_000; // the page polls once a second

const started = Date.now();
const stack = new Stack();
let passed = 0;

function ok(what) {
    passed++;
    console.log(`ok ${passed} - ${what}`);
}
function check(cond, what, detail) {
    if (!cond) throw new Error(`${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
    ok(what);
}

async function main() {
    // A short window and a low hot threshold, so the advisor's verdicts
    // follow this short, modest load.
    await stack.servers({ workers: 2, advice: { window_s: 2, hot_rate: 500, sync_share_pct: 90 } });
    const base = stack.base;
    stack.wrk(40, 4);
    const page = await stack.page({ width: 1440, height: 1000 });
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
    const sent = Date.now();
    stack.setMode('task');
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
    const st = await stack.stop();
    check(st && st.code === 0, 'hotpath drains and exits 0', st);
}

const timer = setTimeout(async () => {
    console.error(`browser test: over ${DEADLINE_MS / 1000} s, stopping`);
    await stack.stop();
    process.exit(1);
}, DEADLINE_MS);

try {
    await main();
    console.log(`browser test: ${passed} passed, 0 failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
} catch (e) {
    console.error(`not ok - ${e.message}`);
    console.error(stack.stderr());
    console.log(`browser test: ${passed} passed, 1 failed`);
    process.exitCode = 1;
} finally {
    clearTimeout(timer);
    await stack.stop();
}
