// app.js - the /dashboard page's logic: poll /dashboard/data once a second,
// turn its cumulative counters into per-second rates (the difference of two
// samples over the server's own clock), keep the last HISTORY_S seconds of
// samples in this page, and draw them with uPlot (inlined before this file).
//
// The server keeps no history and no per-viewer state: a page opened late
// starts its charts when it opens; one left open keeps 5 minutes. Mode
// switches are marked where the server says the mode took effect
// (mode_since_ms), not where the sample that saw it happened to fall.
'use strict';
(() => {
    const PERIOD_MS = 1000;
    const HISTORY_S = 300;
    const STALE_MS = 4000; // "no answer" after this long without a sample

    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim();
    const MODE_COLOR = { valuetask: color('--vt'), task: color('--task') };
    const MODE_BAND = { valuetask: 'rgba(56,189,248,0.09)', task: 'rgba(251,146,60,0.12)' };

    // The page's own requests: kept out of the charts (they are the
    // watcher, not the load), shown dimmed in the routes table.
    const own = (path) => path === '/dashboard' || path.startsWith('/dashboard/');

    // --- formatting ---------------------------------------------------------
    const $ = (id) => document.getElementById(id);
    function num(v, digits) {
        if (v == null || !Number.isFinite(v)) return '–';
        const a = Math.abs(v);
        if (a >= 1e9) return (v / 1e9).toFixed(2) + 'G';
        if (a >= 1e6) return (v / 1e6).toFixed(2) + 'M';
        if (a >= 1e4) return (v / 1e3).toFixed(1) + 'k';
        if (a >= 1e3) return Math.round(v).toLocaleString('en-US');
        return v.toFixed(digits ?? (a >= 100 || v === Math.round(v) ? 0 : 2));
    }
    const pct = (v) => (v == null || !Number.isFinite(v) ? '–' : (100 * v).toFixed(1) + '%');
    const ratio = (a, b) => (b > 0 ? a / b : null);
    function duration(ms) {
        const s = Math.max(0, Math.round(ms / 1000));
        if (s < 60) return s + ' s';
        if (s < 3600) return Math.floor(s / 60) + ' min ' + String(s % 60).padStart(2, '0') + ' s';
        return Math.floor(s / 3600) + ' h ' + String(Math.floor(s / 60) % 60).padStart(2, '0') + ' min';
    }
    const clock = (ms) => new Date(ms).toLocaleTimeString('en-GB');
    function setText(id, text, cls) {
        const el = $(id);
        el.textContent = text;
        if (cls !== undefined) el.className = cls;
    }

    // --- history --------------------------------------------------------------
    // Columns for uPlot: x (unix seconds), then one series per chart.
    const hist = { x: [], req: [], alloc: [], apr: [], mode: [] };
    const changes = []; // {x, mode}: where each switch took effect
    let prev = null; // the previous sample, with `at` (client ms when received)
    let lastOk = 0;

    function totals(d) {
        let req = 0, allocs = 0, bytes = 0;
        for (const r of d.routes) {
            if (own(r.path)) continue;
            for (const m of [r.vt, r.task]) {
                req += m[0];
                allocs += m[1];
                bytes += m[2];
            }
        }
        return { req, allocs, bytes };
    }

    function trim() {
        const from = hist.x.length ? hist.x[hist.x.length - 1] - HISTORY_S : 0;
        let n = 0;
        while (n < hist.x.length && hist.x[n] < from) n++;
        if (n) for (const k in hist) hist[k].splice(0, n);
        while (changes.length && changes[0].x < from) changes.shift();
    }

    // --- charts ---------------------------------------------------------------
    // Mode bands under the series, a labelled line at each switch above them.
    function modeSegments(u) {
        const [x0, x1] = [u.scales.x.min, u.scales.x.max];
        if (!hist.x.length || x0 == null) return [];
        const segs = [];
        let mode = hist.mode[0], from = x0;
        for (const c of changes) {
            if (c.x <= from) { mode = c.mode; continue; }
            if (c.x >= x1) break;
            segs.push({ from, to: c.x, mode });
            from = c.x;
            mode = c.mode;
        }
        segs.push({ from, to: x1, mode });
        return segs;
    }

    const modePlugin = {
        hooks: {
            drawClear: [(u) => {
                const { ctx, bbox } = u;
                ctx.save();
                for (const s of modeSegments(u)) {
                    const a = u.valToPos(s.from, 'x', true), b = u.valToPos(s.to, 'x', true);
                    ctx.fillStyle = MODE_BAND[s.mode];
                    ctx.fillRect(a, bbox.top, b - a, bbox.height);
                }
                ctx.restore();
            }],
            draw: [(u) => {
                const { ctx, bbox } = u;
                const pr = devicePixelRatio || 1;
                ctx.save();
                ctx.font = `${11 * pr}px system-ui, sans-serif`;
                ctx.textBaseline = 'top';
                for (const c of changes) {
                    if (c.x < u.scales.x.min || c.x > u.scales.x.max) continue;
                    const x = Math.round(u.valToPos(c.x, 'x', true));
                    ctx.strokeStyle = MODE_COLOR[c.mode];
                    ctx.lineWidth = 1.5 * pr;
                    ctx.setLineDash([5 * pr, 4 * pr]);
                    ctx.beginPath();
                    ctx.moveTo(x, bbox.top);
                    ctx.lineTo(x, bbox.top + bbox.height);
                    ctx.stroke();
                    ctx.fillStyle = MODE_COLOR[c.mode];
                    ctx.fillText('→ ' + c.mode, x + 4 * pr, bbox.top + 3 * pr);
                }
                ctx.restore();
            }],
        },
    };

    const axis = {
        stroke: color('--muted'),
        grid: { stroke: 'rgba(255,255,255,0.06)', width: 1 },
        ticks: { stroke: 'rgba(255,255,255,0.12)', width: 1 },
    };

    function makeChart(el, label, stroke, values) {
        const opts = {
            width: el.clientWidth || 400,
            height: el.clientHeight || 230,
            cursor: { drag: { x: false, y: false } },
            // The headline figures above say the current values; a legend
            // would repeat them, or show dashes when the cursor is away.
            legend: { show: false },
            scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
            axes: [
                { ...axis, space: 80, size: 32, values: (u, ticks) => ticks.map((t) => clock(t * 1000)) },
                { ...axis, size: 56, values: (u, ticks) => ticks.map((t) => num(t)) },
            ],
            series: [{}, { label, stroke, width: 2, fill: stroke + '22', points: { show: false } }],
            plugins: [modePlugin],
        };
        const u = new uPlot(opts, [hist.x, values], el);
        new ResizeObserver(() => u.setSize({ width: el.clientWidth, height: el.clientHeight }))
            .observe(el);
        return u;
    }

    const charts = {
        req: makeChart($('chart-req'), 'requests/s', '#e2e8f0', hist.req),
        alloc: makeChart($('chart-alloc'), 'allocations/s', '#f472b6', hist.alloc),
        apr: makeChart($('chart-apr'), 'allocations/request', '#facc15', hist.apr),
    };
    function redraw() {
        charts.req.setData([hist.x, hist.req]);
        charts.alloc.setData([hist.x, hist.alloc]);
        charts.apr.setData([hist.x, hist.apr]);
    }

    // --- one sample -------------------------------------------------------------
    function ingest(d, at) {
        if (prev && d.uptime_ms < prev.uptime_ms) {
            prev = null; // the server restarted: its counters began again
        }
        const x = at / 1000;
        // Where the current mode took effect, on this page's clock.
        const since = at - (d.uptime_ms - d.mode_since_ms);
        if (prev && d.mode !== prev.mode) changes.push({ x: since / 1000, mode: d.mode });

        const t = totals(d);
        let rates = null;
        if (prev) {
            const dt = (d.uptime_ms - prev.uptime_ms) / 1000;
            if (dt > 0) {
                const p = prev.totals;
                rates = {
                    dt,
                    req: (t.req - p.req) / dt,
                    alloc: (t.allocs - p.allocs) / dt,
                    apr: ratio(t.allocs - p.allocs, t.req - p.req),
                    bpr: ratio(t.bytes - p.bytes, t.req - p.req),
                };
                hist.x.push(x);
                hist.req.push(rates.req);
                hist.alloc.push(rates.alloc);
                hist.apr.push(rates.apr);
                hist.mode.push(d.mode);
                trim();
                redraw();
            }
        }
        render(d, rates, since);
        prev = { ...d, totals: t, at };
    }

    // --- rendering ------------------------------------------------------------
    function render(d, r, since) {
        setText('mode', d.mode, 'mode ' + d.mode);
        setText('mode-since', d.mode_since_ms > 0
            ? `since ${clock(since)} (${duration(Date.now() - since)} ago)`
            : `since start (${duration(d.uptime_ms)})`);
        setText('workers', `${d.workers} worker${d.workers === 1 ? '' : 's'}`);
        setText('uptime', `up ${duration(d.uptime_ms)}`);

        if (r) {
            setText('k-req', num(r.req));
            setText('k-alloc', num(r.alloc), 'v' + (r.req > 0 && r.alloc === 0 ? ' zero' : ''));
            setText('k-apr', num(r.apr, 2), 'v' + (r.apr === 0 ? ' zero' : ''));
            setText('k-bpr', num(r.bpr, 0), 'v' + (r.bpr === 0 ? ' zero' : ''));
        }
        renderCache(d, r);
        const misuse = d.misuse.consumed + d.misuse.stale;
        setText('k-misuse', num(misuse), 'v' + (misuse ? ' alarm' : ' zero'));
        setText('m-consumed', num(d.misuse.consumed), d.misuse.consumed ? 'alarm' : '');
        setText('m-stale', num(d.misuse.stale), d.misuse.stale ? 'alarm' : '');
        setText('m-rejected', num(d.rejections));
        setText('m-conns', `${num(d.conns.refused)} · ${num(d.conns.open)}`);
        renderLayers(d, r);
        renderRoutes(d);
    }

    function renderCache(d, r) {
        const c = d.cache, u = d.upstream, p = prev;
        const served = (x) => x.hits + x.stale;
        const looked = (x) => x.hits + x.stale + x.misses + x.coalesced;
        let hit = null, lat = null;
        if (r && p) {
            const dt = r.dt;
            hit = ratio(served(c) - served(p.cache), looked(c) - looked(p.cache));
            lat = ratio(u.latency_us - p.upstream.latency_us, u.done - p.upstream.done);
            setText('c-hits', `${num((c.hits - p.cache.hits) / dt)} · ${num((c.stale - p.cache.stale) / dt)}`);
            setText('c-miss', `${num((c.misses - p.cache.misses) / dt)} · ${num((c.coalesced - p.cache.coalesced) / dt)}`);
            setText('u-rate', num((u.requests - p.upstream.requests) / dt));
        }
        const hitText = hit == null ? (looked(c) ? pct(ratio(served(c), looked(c))) + ' (all)' : '–') : pct(hit);
        setText('c-ratio', hitText);
        setText('k-hit', hitText.replace(' (all)', ''));
        const latText = lat == null ? '–' : lat >= 1000 ? (lat / 1000).toFixed(2) + ' ms' : lat.toFixed(0) + ' µs';
        setText('u-lat', latText);
        setText('k-lat', latText);
        setText('u-err', num(u.errors), u.errors ? 'alarm' : '');
    }

    function cell(text, cls) {
        const td = document.createElement('td');
        td.textContent = text;
        if (cls) td.className = cls;
        return td;
    }

    function renderLayers(d, r) {
        const before = new Map((prev?.layers ?? []).map((l) => [l.name, l]));
        const rows = d.layers.map((l) => {
            const tr = document.createElement('tr');
            const p = before.get(l.name);
            const dt = r?.dt;
            const dc = p && dt ? l.calls - p.calls : null;
            // The synchronous share of the last second's calls; of all
            // calls since start when the layer was not called in it.
            const share = dc ? (l.sync - p.sync) / dc : ratio(l.sync, l.calls);
            tr.append(cell(l.name, 'name'), cell(l.kind, 'kind'),
                cell(dc == null ? '–' : num(dc / dt), 'n'));
            const td = document.createElement('td');
            const bar = document.createElement('span');
            bar.className = 'bar' + (share != null && share < 0.9 ? ' low' : '');
            const fill = document.createElement('i');
            fill.style.width = share == null ? '0' : (100 * share).toFixed(1) + '%';
            bar.append(fill);
            td.append(bar, document.createTextNode(pct(share) + (dc ? '' : ' (all)')));
            if (!dc) td.className = 'dim';
            tr.append(td);
            const avoided = p && dt ? (l.avoided - p.avoided) / dt : null;
            const allocated = p && dt ? (l.allocated - p.allocated) / dt : null;
            tr.append(cell(num(avoided), 'n'),
                cell(num(allocated), 'n' + (allocated === 0 && dc ? ' zero' : '')));
            const v = document.createElement('td');
            const badge = document.createElement('span');
            badge.className = 'verdict ' + l.advice;
            badge.textContent = l.advice;
            v.append(badge);
            tr.append(v);
            return tr;
        });
        if (rows.length) $('layers').replaceChildren(...rows);
    }

    function renderRoutes(d) {
        const rows = d.routes.map((rt) => {
            const tr = document.createElement('tr');
            if (own(rt.path)) tr.className = 'own';
            tr.append(cell(rt.path + (own(rt.path) ? ' (this page)' : ''), 'name'));
            for (const [req, allocs, bytes] of [rt.vt, rt.task]) {
                const apr = ratio(allocs, req), bpr = ratio(bytes, req);
                tr.append(cell(req ? num(req) : '–', 'n'),
                    cell(req ? num(apr, 2) : '–', 'n' + (req && !allocs ? ' zero' : '')),
                    cell(req ? num(bpr, 0) : '–', 'n' + (req && !bytes ? ' zero' : '')));
            }
            return tr;
        });
        if (rows.length) $('routes').replaceChildren(...rows);
    }

    // --- the poll loop ------------------------------------------------------------
    async function poll() {
        const started = Date.now();
        try {
            const res = await fetch('/dashboard/data', { cache: 'no-store' });
            if (!res.ok) throw new Error('HTTP ' + res.status);
            ingest(await res.json(), Date.now());
            lastOk = Date.now();
        } catch (e) {
            // Shown by the status line below; the next poll tries again.
        }
        const age = Date.now() - lastOk;
        if (lastOk && age < STALE_MS) setText('status', 'live', 'status ok');
        else setText('status', lastOk ? `no answer for ${duration(age)}` : 'connecting…', 'status bad');
        setTimeout(poll, Math.max(100, PERIOD_MS - (Date.now() - started)));
    }

    // For the browser test and for a curious reader's console.
    window.hotpathDashboard = { charts, hist, changes };
    poll();
})();
