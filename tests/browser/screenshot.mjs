// screenshot.mjs - the README's picture of /dashboard: two workers under
// wrk's mixed load for about 100 s, switched to task mode and back, so the
// charts show both modes and both switches. Not a test; run it by hand:
//
//   HOTPATH_ROOT=. HOTPATH_BUILD=build node tests/browser/screenshot.mjs [OUT.png]
//
// (default OUT: handlers/dashboard/screenshot.png).
import { join } from 'node:path';

import { Stack, root } from './support.mjs';

const out = process.argv[2] ?? join(root, 'handlers/dashboard/screenshot.png');
const PHASES = [['valuetask', 40], ['task', 35], ['valuetask', 25]]; // seconds each
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const stack = new Stack();
try {
    await stack.servers({ workers: 2 });
    stack.wrk(PHASES.reduce((s, [, t]) => s + t, 0) + 10, 4);
    const page = await stack.page({ width: 1440, height: 1000 });
    await page.goto(`${stack.base}/dashboard`);
    for (const [i, [mode, seconds]] of PHASES.entries()) {
        if (i) stack.setMode(mode);
        console.log(`${mode} for ${seconds} s`);
        await sleep(seconds * 1000);
    }
    await page.screenshot({ path: out, fullPage: true });
    console.log(`screenshot: ${out}`);
} finally {
    await stack.stop();
}
