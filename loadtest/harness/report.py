"""The report: report.md, results.json and the gnuplot plots of a run, and
where they go.

Where: `make bench-quick` writes loadtest/results/<date>-quick/, a full run
loadtest/results/<date>/ (both git-ignored; --out DIR elsewhere). Only a
full run with --publish (`make bench PUBLISH=1`) replaces the committed
loadtest/results/latest/, and it refuses to start on a tree with
uncommitted changes (or untracked files), and to publish if HEAD moved or
the tree changed while it ran: published figures come from the commit the
report names.
"""

import datetime
import json
import os
import platform
import re
import shutil
import subprocess

from . import micro, stats, targets, threshold, tiers
from . import scenarios as scen
from .procs import HERE, ROOT, run

RESULTS = os.path.join(HERE, "results")
LATEST = os.path.join(RESULTS, "latest")


# --- where, and from which commit ---------------------------------------------------------

def git_state():
    """(commit, dirty): HEAD, and whether any tracked file differs from it
    or an untracked, not ignored file exists."""
    def git(*args):
        p = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=30)
        return p.stdout.strip() if p.returncode == 0 else None
    return git("rev-parse", "HEAD"), bool(git("status", "--porcelain"))


def refuse_dirty():
    """None when the tree may publish, else why not."""
    commit, dirty = git_state()
    if commit is None:
        return "not a git checkout: a published report must name its commit"
    if dirty:
        return ("the tree has uncommitted changes (git status --porcelain is not empty): "
                "published figures must come from a commit. Commit or stash, or run without "
                "PUBLISH=1 (the report then goes to a dated folder only)")
    return None


def output_dir(profile, out):
    if out:
        return os.path.abspath(out)
    day = datetime.date.today().isoformat()
    return os.path.join(RESULTS, day + ("-quick" if profile == "quick" else ""))


def publish_refusal(commit_at_start):
    """Why this run may not replace latest/ (None: it may): the tree must
    still be clean and on the commit the run started from."""
    why = refuse_dirty()
    commit, _ = git_state()
    if why is None and commit != commit_at_start:
        why = f"HEAD moved during the run ({commit_at_start[:12]} -> {commit[:12]})"
    return why


def publish(out, files):
    """Replace loadtest/results/latest/ with this run's files."""
    os.makedirs(LATEST, exist_ok=True)
    for name in os.listdir(LATEST):
        os.remove(os.path.join(LATEST, name))
    for name in files:
        shutil.copy(os.path.join(out, name), LATEST)


def machine_info():
    info = dict(cores=os.cpu_count(), kernel=platform.release(), python=platform.python_version())
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
            info["cpu_model"] = m.group(1) if m else "unknown"
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s*(\d+) kB", f.read(), re.M)
            info["memory_gib"] = round(int(m.group(1)) / 2**20, 1)
    except OSError:
        pass

    def out(cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return None
    info["git_commit"], info["git_dirty"] = git_state()
    info["nginx"] = (out(["nginx", "-v"]) or "").replace("nginx version: ", "")
    info["wrk"] = out(["wrk", "-v"])
    info["h2load"] = out(["h2load", "--version"])
    info["valgrind"] = out(["valgrind", "--version"])
    info["gnuplot"] = out(["gnuplot", "--version"])
    with open("/proc/loadavg") as f:
        info["load_average"] = f.read().split()[:3]
    return info


# --- formatting ---------------------------------------------------------------------------

def n(x, digits=0):
    if x is None:
        return "-"
    if abs(x) >= 10000 and digits == 0:
        return f"{x / 1000:.1f}k"
    return f"{x:,.{digits}f}"


def ms(s, digits=0):
    """median (min–max) of a stats.spread."""
    if not s:
        return "-"
    if s["n"] > 1:
        return f"{n(s['median'], digits)} ({n(s['min'], digits)}–{n(s['max'], digits)})"
    return n(s["median"], digits)


def pct(x):
    return "-" if x is None else f"{x:.0%}"


def rate(r, cap=None):
    """'12,500 (50k/core)'."""
    if r is None:
        return "-"
    return f"{r:,}" + (f" ({r / cap / 1000:.0f}k/core)" if cap else "")


def change(s):
    """A ratio summary as a signed change: '+4% (+1%…+6%, 5/5 above)'."""
    if not s:
        return "-"
    med = f"{s['median'] - 1:+.1%}"
    if s["n"] == 1:
        return med + " (1 round)"
    side = ("all above" if s["min"] > 1 else "all below" if s["max"] < 1 else "mixed")
    return f"{med} ({s['min'] - 1:+.1%}…{s['max'] - 1:+.1%}, n={s['n']}, {side})"


# --- plots ------------------------------------------------------------------------------------

def plots(sweep, out):
    """One p99 plot and one throughput plot per runtime: every cap and both
    modes, x = offered rate per core, saturation points ringed. Returns the
    file names written."""
    files = []
    if not sweep or not shutil.which("gnuplot"):
        return files
    colors = {0: "#1f77b4", 1: "#d62728", 2: "#2ca02c"}
    for runtime in dict.fromkeys(lbl.split(" ")[0] for lbl in sweep["labels"]):
        labels = [lbl for lbl in sweep["labels"] if lbl.split(" ")[0] == runtime]
        tag = f"sweep-{runtime}"
        dat = os.path.join(out, tag + ".dat")
        titles, cols, dts = [], [], []
        with open(dat, "w") as f:
            f.write("# per series (gnuplot index): offered/core achieved/core p99_us "
                    "p99_us_at_saturation offered\n")
            for ci, c in enumerate(sweep["caps"]):
                for li, lbl in enumerate(labels):
                    sat = c["saturation"][lbl]["rate"]
                    f.write(f"# {lbl} at cap {c['cap']:.0%}\n")
                    for pt in c["points"]:
                        s = pt["summary"].get(lbl)
                        if not s or s["limit"] == "generator":
                            continue
                        f.write(f"{pt['rate'] / c['cap']:.0f} {s['achieved'] / c['cap']:.0f} "
                                f"{s['p99']:.1f} {s['p99'] if pt['rate'] == sat else 'NaN'} "
                                f"{pt['rate']}\n")
                    f.write("\n\n")
                    titles.append(f"{lbl.split(' ', 1)[1]}@{c['cap']:.0%}")
                    cols.append(colors.get(li, "#555555"))
                    dts.append(str(ci + 1))
            for c in sweep["caps"]:
                f.write(f"# p99 bound at cap {c['cap']:.0%}\n")
                xs = [pt["rate"] / c["cap"] for pt in c["points"]] or [1]
                f.write(f"{min(xs):.0f} 0 {c['bound_us']:.1f} NaN 0\n"
                        f"{max(xs):.0f} 0 {c['bound_us']:.1f} NaN 0\n\n\n")
        files.append(os.path.basename(dat))
        bound_titles = [f"bound@{c['cap']:.0%}" for c in sweep["caps"]]
        prefix = os.path.join(out, tag)
        args = (f"data='{dat}'; out='{prefix}'; runtime='{runtime}'; path='{sweep['path']}'; "
                f"n={len(titles)}; nb={len(bound_titles)}; titles='{' '.join(titles)}'; "
                f"colors='{' '.join(cols)}'; dts='{' '.join(dts)}'; "
                f"btitles='{' '.join(bound_titles)}'")
        try:
            run(["gnuplot", "-e", args, os.path.join(HERE, "plot.gp")], 60)
        except (RuntimeError, TimeoutError) as e:
            print(f"gnuplot failed: {e}", flush=True)
            continue
        for kind in ("p99", "throughput"):
            for ext in ("png", "svg"):
                name = f"{tag}-{kind}.{ext}"
                if os.path.exists(os.path.join(out, name)):
                    files.append(name)
    return files


# --- the capped sweep's sections ------------------------------------------------------------

def threshold_table(sw):
    L = ["| runtime | mode | cap (period) | p99 bound | saturation rate | first not held "
         "(limited by) | parting rate (vs baseline) | full core: saturation / parting |",
         "|---|---|---|---|---|---|---|---|"]
    sc = sw["scaling"]
    for lbl in sw["labels"]:
        runtime, mode = lbl.split(" ", 1)
        pair = next((f"{b} vs {c}" for b, c in sw["pairs"] if c == lbl), None)
        for c in sw["caps"]:
            s = c["saturation"][lbl]
            part = c["parting"][pair] if pair else None
            first = (f"{rate(s['next'], c['cap'])} ({s['next_limit']})" if s["next"]
                     else f"none up to {rate(s['top'], c['cap'])}" if s["top"]
                     else "no point the generator did not limit")
            if s["not_held_below"]:
                first += "; not held below it: " + ", ".join(f"{r:,}" for r in s["not_held_below"])
            if part is None:
                part_s = "(baseline)"
            elif part["until"] is None:
                part_s = "-"
            elif part["rate"] is None:
                part_s = f"did not part up to {rate(part['until'], c['cap'])}"
            else:
                part_s = rate(part["rate"], c["cap"])
            full_sat = sc[lbl]["saturation_full_core"]
            full_part = sc[pair]["parting_full_core"] if pair else None
            full = (f"{per_core(full_sat)} / " if full_sat else "- / ") + \
                (per_core(full_part) if full_part else "-")
            L.append(f"| {runtime} | {mode} | {c['cap']:.0%} ({c['period_us'] / 1000:g} ms) "
                     f"| {c['bound_us'] / 1000:.1f} ms | {rate(s['rate'], c['cap'])} | {first} "
                     f"| {part_s} | {full} |")
    return "\n".join(L)


def per_core(br):
    lo, hi = br
    if round(lo, -3) == round(hi, -3):
        return f"{lo / 1000:.0f}k/core"
    return f"{lo / 1000:.0f}k–{hi / 1000:.0f}k/core"


def scaling_text(sw):
    if len(sw["caps"]) < 2:
        return ("One cap only in this run: no full-core figure (a full core's rate is only "
                "quoted where two caps agree; `make bench` measures two).")
    L = []
    for key, v in sw["scaling"].items():
        if "saturation_brackets" in v:
            br, ok, what = v["saturation_brackets"], v["saturation_full_core"], "saturation"
        else:
            br, ok, what = v["parting_brackets"], v["parting_full_core"], "parting"
        brs = ", ".join(f"{c['cap']:.0%}: " + (per_core(b) if b else "open")
                        for c, b in zip(sw["caps"], br))
        L.append(f"- {key}, {what}: brackets per core {brs} → "
                 + (f"**agree: {per_core(ok)}**" if ok else "do not agree (no full-core figure)"))
    return "\n".join(L)


def band_answers(sw):
    """[(band, runtime, cap, answer)] for every band answer the generator did
    not spoil (answer None: not measured; "generator": no answer)."""
    out = []
    for band in threshold.BANDS:
        for b, c in sw["pairs"]:
            for cap in sw["caps"]:
                a = next((x for x in cap["bands"][f"{b} vs {c}"]
                          if x and x["per_core"] == band), None)
                if a and any(a.get(lbl) is None or a[lbl]["limit"] == "generator"
                             for lbl in (b, c)):
                    a = "generator"
                out.append((band, b.split(" ")[0], cap, a, b, c))
    return out


def band_paragraphs(sw):
    L = []
    for band in threshold.BANDS:
        parts = []
        for bd, runtime, cap, a, b, c in band_answers(sw):
            if bd != band:
                continue
            where = f"{runtime}, {cap['cap']:.0%} cap"
            if a is None:
                parts.append(f"{where}: not measured")
                continue
            if a == "generator":
                parts.append(f"{where}: no answer, the load generator was the limit there")
                continue
            vb, vc, cpu, p99 = a[b], a[c], a["cpu"], a["p99"]
            past = "" if vb["held"] and vc["held"] else \
                " (a mode did not hold this rate: past its saturation)"
            at_cap = min(vb["cap_share"], vc["cap_share"]) >= threshold.SERVER_AT_CAP
            parts.append(
                f"{where} ({a['rate']:,} req/s offered{past}): {c.split(' ', 1)[1]} mode "
                f"used **{change(cpu)}** CPU per request over {b.split(' ', 1)[1]} "
                f"({pct(vb['cap_share'])} → {pct(vc['cap_share'])} of the cap), "
                + ("beyond the spread" if cpu and cpu["beyond"] else "within the spread")
                + (" — but both modes used their whole cap, so CPU per request is the cap "
                   "÷ the rate in both and the task's extra work shows as latency and "
                   "batching instead" if at_cap else "")
                + f"; p99 {change(p99)} (medians {n(vb['p99'])} → {n(vc['p99'])} µs), "
                + ("a difference beyond the spread" if p99 and p99["beyond"]
                   else "no difference beyond the spread"))
        L.append(f"**{band // 1000}k req/s per core.** " + "; ".join(parts) + ".")
    return "\n\n".join(L)


def chance_text(sw):
    ns = [a[k]["n"] for _, _, _, a, _, _ in band_answers(sw)
          if isinstance(a, dict) for k in ("cpu", "p99") if a.get(k)]
    if not ns:
        return ""
    m, nmin = len(ns), min(ns)
    p = stats.sign_chance(nmin)
    return (f"How much to trust a \"beyond the spread\" above: with {nmin} paired rounds a "
            f"metric with no real difference puts every round on one side of 1 with "
            f"probability 2·0.5^{nmin} = {p:.1%}; {m} such metrics are compared here (CPU and "
            f"p99 at each band, cap and runtime), so the chance that noise alone produces at "
            f"least one such finding is 1−(1−{p:.3f})^{m} = {stats.family_chance(p, m):.0%}.")


def sweep_table(c, labels):
    L = ["| offered (per core) | target | achieved | p50 µs | p99 µs (min–max) | p99.9 µs "
         "| cap used | throttled | CPU µs/req | allocs/req (bytes, gen0; around it) "
         "| gen. lag p99 µs | others "
         "| limited by | held | runs (+discarded) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for pt in c["points"]:
        for lbl in labels:
            s = pt["summary"].get(lbl)
            if not s:
                continue
            p99 = (f"{n(s['p99'])} ({n(s['p99_min'])}–{n(s['p99_max'])})" if s["n"] > 1
                   else n(s["p99"]))
            L.append(f"| {pt['rate']:,} ({pt['per_core'] / 1000:g}k{', band' if pt['band'] else ''}) "
                     f"| {lbl} | {n(s['achieved'])} | {n(s['p50'])} | {p99} | {n(s['p99_9'])} "
                     f"| {pct(s['cap_share'])} | {pct(s['throttled'])} "
                     f"| {n(s['cpu_us_per_req'], 2)} | {allocs(s)} "
                     f"| {n(s['lag_p99'])} | {n(s['others_cpu'], 2)} | {s['limit']} "
                     f"| {'yes' if s['held'] else '**no**'} "
                     f"| {s['n']}+{len(pt['discarded'][lbl])} |")
    return "\n".join(L)


def allocs(s):
    """'4.00 (320 B; outside chain 0.00, worker 4.02)' for hotpath; '- (349 B,
    gen0 0.143/1k)' for a runtime that counts bytes and collections."""
    b, g = s.get("bytes_per_req"), s.get("gen0_per_1k")
    o, w = s.get("outside_chain_per_req"), s.get("worker_allocs_per_req")
    extra = [f"{b:,.0f} B"] if b is not None else []
    extra += [f"gen0 {g:.3f}/1k"] if g is not None else []
    around = ([f"outside chain {o:.2f}"] if o is not None else []) + \
        ([f"worker {w:.2f}"] if w is not None else [])
    text = ", ".join(extra) + ("; " if extra and around else "") + ", ".join(around)
    return n(s.get("allocs_per_req"), 2) + (f" ({text})" if text else "")


def sweep_section(res):
    sw = res.get("sweep")
    p = res["meta"]["params"]
    if not sw:
        return ["## The threshold: capped sweep", "", "Not run in this run.", ""]
    L = ["## The threshold: capped sweep (hotpath-load, open loop, server CPU capped)", ""]
    L.append(
        f"The server's CPU is capped with {res['meta'].get('cgroup', 'a cgroup')}, so that "
        "the server, not the one-core load generator, runs out. Offered rates are per core × "
        "cap, so caps compare per core. Each run: "
        f"{p['sweep_warmup_s']} s warm-up, {p['sweep_duration_s']} s measured, "
        f"{p['connections']} connections, `{sw['path']}`; latency from each request's "
        "*intended* send time (no coordinated omission); the server's CPU (per-thread "
        "schedstat) and the cgroup's throttling counters are read exactly at the generator's "
        "window edges. The generator " + ("busy-polls (`--spin`): on this VM a cross-CPU "
                                          "wake-up costs the waker ~20 µs, so a sleeping "
                                          "generator ran out first and charged the server for "
                                          "waking it; its CPU reads 100% by construction and "
                                          "its send lag says whether it kept up."
                                          if p["spin"] else "sleeps between events.")
        + f" Rates on the grid: {p['sweep_rounds']} round(s); the bands: {p['band_rounds']} "
        "rounds; targets in rotated order every round.")
    L.append("")
    if any(lbl.split(" ")[0] == targets.KESTREL_NOSPIN.name for lbl in sw["labels"]):
        L.append(f"The twin runs here as `{targets.KESTREL_NOSPIN.name}` "
                 f"(`{targets.SPIN_KNOB}=0`, primed until its tiered compilation was idle): "
                 "with the default its idle thread-pool workers spin before they block, and "
                 "under a cap at low rates that spinning, not the request path, used most of "
                 "the quota (loadtest/kestrel/README.md).")
        L.append("")
    L.append("What the period adds: a throttled server waits for its next period, up to "
             "period × (1 − cap): " + ", ".join(
                 f"{c['cap']:.0%} → period {c['period_us'] / 1000:g} ms, up to "
                 f"{c['throttle_wait_us'] / 1000:.2f} ms" for c in sw["caps"])
             + f". The p99 bound is that plus {threshold.P99_SLACK_US / 1000:.0f} ms of "
             "queueing.")
    L.append("")
    L.append(f"Rules: **held** = achieved ≥ {threshold.HELD_ACHIEVED:.0%} of offered, p99 ≤ the "
             "bound, nothing lost. **generator-limited** = its send lag p99 > "
             f"{threshold.GEN_LAG_P99_US / 1000:.0f} ms or p50 > "
             f"{threshold.GEN_LAG_P50_US:.0f} µs (or ≥ {threshold.GEN_CPU_FULL:.0%} CPU when it "
             "sleeps); retried twice, and never used for a verdict. **server-limited** = the "
             f"server used ≥ {threshold.SERVER_AT_CAP:.0%} of its cap over the window. "
             "**Saturation rate** = the highest rate held (noise only makes runs fail; lower "
             "rates not held are listed); "
             "**parting rate** = the lowest rate where task's p99 is above "
             f"{threshold.PART_RATIO}× valuetask's (median of the per-round paired ratios) and "
             "stays above at every higher rate, up to the first rate past the last one either "
             "mode held. "
             "Brackets wider than "
             f"{p['resolution']:.0%} were split and measured again.")
    L.append("")
    kept = sum(len(rs) for c in sw["caps"] for pt in c["points"] for rs in pt["runs"].values())
    gone = sum(len(rs) for c in sw["caps"] for pt in c["points"]
               for rs in pt["discarded"].values())
    L.append(threshold_table(sw))
    L.append("")
    L.append(f"Runs kept {kept}, retried and discarded {gone} (generator-limited, or not held "
             "with neither side at its limit): the share discarded is a measure of how noisy "
             "the machine was during the sweep, as is the \"others\" column below: the CPU "
             "(in cores) the rest of the machine - other tenants, this runner - used during "
             "each window, from /proc/stat less the server's and the generator's. "
             "allocs/req: as in the scenarios (hotpath: the route's chain, and around it "
             "the allocations outside the chain and the worker's, all three doors - the "
             f"worker's include its {p['connections']} connections' set-up over a short "
             "window; the twin: "
             "bytes and gen0 collections per 1,000 requests).")
    L.append("")
    L.append("**Does it scale with the cap?** A full core's rate is the rate at a cap ÷ the "
             "cap; each cap brackets it (last rate held … first not held, ÷ cap), and a "
             "full-core figure is given only where the caps' brackets overlap.")
    L.append("")
    L.append(scaling_text(sw))
    L.append("")
    L.append("### The article's bands: 10k, 50k, 100k req/s per core")
    L.append("")
    L.append("Offered band × cap; paired per round (task ÷ valuetask measured in the same "
             "round), median (min…max); \"beyond the spread\" = every round on the same side.")
    L.append("")
    L.append(band_paragraphs(sw))
    L.append("")
    L.append(chance_text(sw))
    L.append("")
    for runtime in dict.fromkeys(lbl.split(" ")[0] for lbl in sw["labels"]):
        name = f"sweep-{runtime}-p99.png"
        if name in res.get("plots", []):
            L.append(f"![{runtime}: p99 vs offered rate per core]({name}) "
                     f"([SVG](sweep-{runtime}-p99.svg); achieved: "
                     f"[PNG](sweep-{runtime}-throughput.png))")
            L.append("")
    for c in sw["caps"]:
        L.append(f"### Cap {c['cap']:.0%}: every point")
        L.append("")
        if c.get("stopped"):
            L.append(f"Stopped: {c['stopped']}.")
            L.append("")
        outside = {k: v for k, v in c.get("threads_outside", {}).items() if v}
        L.append("Every server thread was inside the cgroup." if not outside else
                 f"**Threads outside the cgroup**: {outside}.")
        L.append("")
        L.append(sweep_table(c, sw["labels"]))
        L.append("")
        for key, part in c["parting"].items():
            if not part["rows"]:
                continue
            rows = ", ".join(f"{r['rate']:,}: {r['ratio']['median']:.2f}"
                             + ("*" if r["parted"] else "") for r in part["rows"] if r["ratio"])
            L.append(f"p99 ratio {key} per rate (* = above {threshold.PART_RATIO}): {rows}.")
            L.append("")
    return L


# --- the closed-loop scenarios' sections ----------------------------------------------------

HP_VT, HP_TASK = targets.HOTPATH.label("valuetask"), targets.HOTPATH.label("task")


def task_pairs(labels):
    """(valuetask, task) label pairs, one per runtime that ran both."""
    out = []
    for rt in targets.RUNTIMES.values():
        b, c = rt.label(rt.baseline), rt.label(rt.compared)
        if b in labels and c in labels:
            out.append((b, c))
    return out


def summary_table(res, short=False):
    """Every target of every scenario. short: the console's columns."""
    if short:
        L = ["| scenario | target | req/s | p99 µs | CPU µs/req | allocs/req | bytes/req "
             "| gen0 per 1k req |", "|---|---|---|---|---|---|---|---|"]
    else:
        L = ["| scenario | target | req/s median (min–max) | p50 µs | p90 µs | p99 µs "
             "| max µs | CPU µs/req | allocs/req | outside chain /req | worker allocs/req "
             "| bytes/req |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, sc in res["scenarios"].items():
        for target, s in sc["summary"].items():
            if short:
                L.append(f"| {name} | {target} | {med(s['rps'])} | {med(s['p99'])} "
                         f"| {med(s['cpu_us_per_req'], 2)} | {med(s.get('allocs_per_req'), 2)} "
                         f"| {med(s.get('bytes_per_req'))} | {med(s.get('gen0_per_1k'), 3)} |")
                continue
            L.append(f"| {name} | {target} | {ms(s['rps'])} | {ms(s['p50'])} | {ms(s['p90'])} "
                     f"| {ms(s['p99'])} | {ms(s['max'])} | {ms(s['cpu_us_per_req'], 2)} "
                     f"| {ms(s.get('allocs_per_req'), 2)} "
                     f"| {ms(s.get('outside_chain_per_req'), 2)} "
                     f"| {ms(s.get('worker_allocs_per_req'), 2)} | {ms(s.get('bytes_per_req'))} |")
    return "\n".join(L)


def med(s, digits=0):
    return n(s["median"], digits) if s else "-"


def ratio_table(res):
    """hotpath's paired ratios per scenario: task / valuetask, valuetask / nginx."""
    tv, vn = scen.ratio_key(HP_TASK, HP_VT), scen.ratio_key(HP_VT, "nginx")
    L = ["| scenario | " + " | ".join(f"{label} task/vt" for _, label in scen.METRICS)
         + " | req/s vt/nginx | CPU/req vt/nginx | hit ratio | errors (non-2xx) |",
         "|---|" + "---|" * (len(scen.METRICS) + 4)]
    for name, sc in res["scenarios"].items():
        r, s = sc["ratios"], sc["summary"]
        v = s.get(HP_VT) or {}
        hit = v.get("cache_hit_ratio")
        errs = sum(x["errors"] for x in s.values())
        non2 = sum(x["non2xx"] for x in s.values())
        L.append(f"| {name} | " + " | ".join(stats.fmt_ratio(r.get(tv, {}).get(k), 3)
                                              for k, _ in scen.METRICS)
                 + f" | {stats.fmt_ratio(r.get(vn, {}).get('rps'), 3)} "
                 f"| {stats.fmt_ratio(r.get(vn, {}).get('cpu_us_per_req'), 3)} "
                 f"| {pct(hit['median']) if hit and name.startswith(('cache', 'mixed')) else '-'} "
                 f"| {errs} ({non2}) |")
    return "\n".join(L)


def verdict_table(res):
    L = ["| scenario | runtime | task vs valuetask: every round on one side (paired, per round) |",
         "|---|---|---|"]
    for name, sc in res["scenarios"].items():
        for b, c in task_pairs(sc["summary"]):
            r = sc["ratios"].get(scen.ratio_key(c, b), {})
            found = [f"{label} {r[k]['median'] - 1:+.0%}" for k, label in scen.METRICS
                     if r.get(k, {}).get("beyond")]
            L.append(f"| {name} | {targets.split_label(b)[0]} | {', '.join(found) or 'none'} |")
    return "\n".join(L)


def spread_note(res):
    sp = [(s["rps"]["max"] - s["rps"]["min"]) / s["rps"]["median"]
          for sc in res["scenarios"].values() for s in sc["summary"].values()
          if s["rps"] and s["rps"]["n"] > 1 and s["rps"]["median"]]
    if not sp:
        return "only one round per target: no spread measured."
    return (f"req/s spread between rounds of the same target, (max−min)/median: median "
            f"{stats.median(sp):.1%}, worst {max(sp):.1%}.")


def advice_section(res):
    L = ["## Decision advice at the end of each scenario", "",
         "`GET /advice` right after hotpath's last valuetask run of each scenario, with a 1 s "
         "window, so the figures are that scenario's.", "",
         "| scenario | layer | calls/s | sync % | avoided | allocated | shared waiters | advice |",
         "|---|---|---|---|---|---|---|---|"]
    reasons = []
    for name, sc in res["scenarios"].items():
        for layer in (sc.get("advice") or {}).get("layers", []):
            if layer.get("figures") != "last window":
                continue
            L.append(f"| {name} | {layer['layer']} | {n(layer['calls_per_s'])} | "
                     f"{100 * layer['sync_share']:.1f} | {n(layer['allocations_avoided'])} | "
                     f"{n(layer['allocations'])} | {n(layer['shared_waiters'])} | "
                     f"**{layer['recommendation']}** |")
            if layer["layer"] in ("cache.get", "upstream.request"):
                reasons.append(f"- {name}, `{layer['layer']}`: {layer['recommendation']} — "
                               f"{layer['reason']}")
    return L + ["", "Why, for the cache and upstream layers:", ""] + \
        (reasons or ["- (no cache or upstream scenario ran)"])


def scenarios_section(res):
    p = res["meta"]["params"]
    if not res["scenarios"]:
        return []
    L = ["## Scenarios (wrk, closed loop)", "",
         "Medians over rounds, (min–max) over rounds; every round runs every target once, in "
         "an order rotated round by round. Latency percentiles are wrk's (from each request's "
         "write to its answer). CPU µs/req: the server's CPU (per-thread schedstat, thread by "
         "thread; nginx: master + worker) over the run ÷ the requests wrk completed. "
         "allocs/req and bytes/req: /stats deltas of the scenario's routes in the mode "
         "measured (hotpath: the route's chain, all three doors; the twin: bytes only, "
         "`GC.GetTotalAllocatedBytes` over the mode's requests). outside chain /req: hotpath's "
         "allocations for those requests around the chain (reading them, pipelined input "
         "kept, output the kernel refused); worker allocs/req: everything hotpath's worker "
         "allocated over the run through all three doors (own, libuv, cJSON) ÷ its requests "
         "- its connections, wrk's, the two /stats reads - of which the route's figure is a "
         "part.", ""]
    for name, sc in res["scenarios"].items():
        L.append(f"- **{name}**: {sc['what']} (`loadtest/{sc['script']}`"
                 + (f" `{' '.join(sc['args'])}`" if sc["args"] else "") + ")")
    L += ["", summary_table(res), "",
          "hotpath's paired ratios: per round, task ÷ valuetask (and valuetask ÷ nginx) "
          "measured in the same round; median (min–max, n rounds). Above 1 in req/s: task "
          "served more; above 1 in p99 or CPU: task was slower / costlier.", "",
          ratio_table(res), ""]
    pairs = sum(len(task_pairs(sc["summary"])) for sc in res["scenarios"].values())
    m = pairs * len(scen.METRICS)
    pr = stats.sign_chance(p["rounds"])
    L += [f"Where the modes differ beyond the spread: every one of the {p['rounds']} rounds' "
          "paired ratios on the same side of 1. For a metric with no real difference that "
          f"happens by chance with probability 2·0.5^{p['rounds']} = {pr:.0%}; with {m} "
          f"metrics compared here (task vs valuetask, per runtime and scenario), the chance of "
          f"at least one such finding from noise alone is {stats.family_chance(pr, m):.0%}"
          + (" — read this table as a hint; the callgrind counts below are the deterministic "
             "figures." if pr > 0.05 else "."), "", verdict_table(res), ""]
    return L


# --- the Kestrel twin ---------------------------------------------------------------------

def gc_line(name, d):
    """'kestrel: .NET 10.0.12, workstation GC (concurrent, 1 heap, ...)'."""
    info = d.get("describe") or {}
    gc = info.get("gc") or {}
    kind = "server" if gc.get("server") else "workstation"
    return (f"`{name}` ({', '.join(d.get('modes', []))}): .NET {info.get('dotnet', '?')}, "
            f"**{kind} GC** ({'concurrent' if gc.get('concurrent') else 'not concurrent'}, "
            f"{gc.get('heap_count', '?')} heap(s), latency mode {gc.get('latency_mode', '?')}), "
            f"{info.get('processors', '?')} processor(s) seen, one `Task<Answer>` = "
            f"{info.get('task_bytes', '?')} B; environment "
            f"`{d.get('env') or '(none beyond the telemetry opt-outs)'}`")


def twin_rows(res):
    """[(scenario, label, summary, ratios)] of every twin target."""
    out = []
    for name, sc in res["scenarios"].items():
        for lbl, s in sc["summary"].items():
            if targets.RUNTIMES.get(targets.split_label(lbl)[0]) in scen.TWINS:
                out.append((name, lbl, s, sc["ratios"]))
    return out


def own_baseline(lbl):
    rt = targets.RUNTIMES[targets.split_label(lbl)[0]]
    return rt.label(rt.baseline)


def hotpath_same(lbl):
    mode = targets.split_label(lbl)[1]
    return targets.HOTPATH.label(mode if mode in targets.HOTPATH.modes else "valuetask")


def decision_rows(res):
    """The price of the decision on each runtime, side by side: per scenario
    and runtime that ran both modes, {scenario, runtime, figure: (valuetask
    median, task median)} for allocs, bytes, gen0 per 1,000 requests and
    CPU per request (None where the runtime does not count it), and the
    paired CPU and req/s ratios task ÷ valuetask."""
    out = []
    for name, sc in res["scenarios"].items():
        for b, c in task_pairs(sc["summary"]):
            sb, sc_ = sc["summary"][b], sc["summary"][c]
            r = sc["ratios"].get(scen.ratio_key(c, b), {})
            row = dict(scenario=name, runtime=targets.split_label(b)[0],
                       cpu_ratio=r.get("cpu_us_per_req"), rps_ratio=r.get("rps"))
            for key in ("allocs_per_req", "bytes_per_req", "gen0_per_1k", "cpu_us_per_req"):
                row[key] = (median_of(sb, key), median_of(sc_, key))
            out.append(row)
    return out


def decision_table(res):
    """decision_rows as a table: hotpath's and the twin's price of the
    same decision in one run, one row per scenario and runtime, in the
    scenarios where the twin ran both modes."""
    rows = decision_rows(res)
    with_twin = {r["scenario"] for r in rows if targets.RUNTIMES[r["runtime"]] in scen.TWINS}
    rows = [r for r in rows if r["scenario"] in with_twin]  # hotpath alone: its own table
    if not rows:
        return []

    def pair(v, digits=0, diff=False):
        a, b = v
        if a is None or b is None:
            return "-"
        return f"{n(a, digits)} → {n(b, digits)}" + (f" ({b - a:+,.{digits}f})" if diff else "")
    L = ["**The price of the decision on each runtime**, side by side in the same rounds: "
         "valuetask → task medians, and the paired ratios task ÷ valuetask (median, min–max). "
         "hotpath counts allocations (exact) and their bytes, the twin bytes and "
         "collections.", "",
         "| scenario | runtime | allocs/req | bytes/req (task − valuetask) "
         "| gen0 per 1,000 req | CPU µs/req | CPU task ÷ vt | req/s task ÷ vt |",
         "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['scenario']} | {r['runtime']} | {pair(r['allocs_per_req'], 2)} "
                 f"| {pair(r['bytes_per_req'], 0, diff=True)} | {pair(r['gen0_per_1k'], 3)} "
                 f"| {pair(r['cpu_us_per_req'], 2)} | {stats.fmt_ratio(r['cpu_ratio'], 2)} "
                 f"| {stats.fmt_ratio(r['rps_ratio'], 2)} |")
    return L + [""]


def twin_section(res):
    rows = twin_rows(res)
    if not rows and not res.get("runtimes"):
        return []
    p = res["meta"]["params"]
    L = ["## The Kestrel twin beside hotpath", "",
         "hotpath's contract on ASP.NET Core (loadtest/kestrel): its chain as `async "
         "ValueTask<Answer>` layers (valuetask: pooling builder; valuetask-nopool: the default "
         "builder), `async Task<Answer>` layers (task), or idiomatic `Task InvokeAsync` "
         "middleware (aspnet). One process per mode, pinned to the server CPU like hotpath and "
         "nginx, in the same rounds, rotated, with the same wrk scripts.", ""]
    for name, d in res.get("runtimes", {}).items():
        L.append("- " + gc_line(name, d))
    L += ["", "Pinned to one CPU, .NET runs workstation GC whatever the project asks for "
          "(Sdk.Web's default is server GC, which needs two CPUs); the `kestrel-servergc` rows "
          "get server GC on the same one CPU by `DOTNET_PROCESSOR_COUNT=2`. Before its first "
          f"run in a scenario each twin process is primed for {p['prime_s']} s "
          "(tiered JIT: its first seconds run unoptimised code); the priming pass is below.",
          ""]
    if not rows:
        return L + ["No twin target ran in the scenarios of this run.", ""]
    L += ["bytes/req: `GC.GetTotalAllocatedBytes` deltas of the mode ÷ its requests; gen0 per "
          "1,000 requests: `GC.CollectionCount(0)` deltas (a gen1 or gen2 collection counts "
          "too); GC pause share: `GC.GetTotalPauseDuration` deltas ÷ the wall time the same "
          "counters cover; CPU µs/req as for every server. The ratios are paired per round "
          "(median, min–max): CPU per request over the same runtime's valuetask mode (the price "
          "of the decision on that runtime), and over hotpath in the same mode (the twin's "
          "own modes: over hotpath's valuetask) - the twin ÷ hotpath ratio measured in one "
          "run - and req/s over hotpath in the same mode.", "",
          "| scenario | target | req/s | CPU µs/req | bytes/req | gen0 per 1,000 req "
          "| GC pause share | CPU ÷ own valuetask | CPU ÷ hotpath (same mode) "
          "| req/s ÷ hotpath (same mode) | errors |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, lbl, s, r in rows:
        own = r.get(scen.ratio_key(lbl, own_baseline(lbl)), {}).get("cpu_us_per_req")
        hp = r.get(scen.ratio_key(lbl, hotpath_same(lbl)), {})
        L.append(f"| {name} | {lbl} | {ms(s['rps'])} | {ms(s['cpu_us_per_req'], 2)} "
                 f"| {ms(s.get('bytes_per_req'))} | {ms(s.get('gen0_per_1k'), 3)} "
                 f"| {pct2(median_of(s, 'gc_pause_share'))} "
                 f"| {stats.fmt_ratio(own, 2) if own else '(baseline)'} "
                 f"| {stats.fmt_ratio(hp.get('cpu_us_per_req'), 2)} "
                 f"| {stats.fmt_ratio(hp.get('rps'), 2)} | {s['errors'] + s['non2xx']} |")
    L += [""] + decision_table(res) + gc_comparison(res) + priming_table(res)
    return L


def median_of(summary, key):
    s = summary.get(key)
    return s["median"] if s else None


def pct2(x):
    return "-" if x is None else f"{x:.2%}"


def gc_comparison(res):
    """Server GC beside workstation GC, mode by mode, where both ran."""
    L = []
    for name, sc in res["scenarios"].items():
        for m in targets.KESTREL_SERVERGC.modes:
            w, sv = targets.KESTREL.label(m), targets.KESTREL_SERVERGC.label(m)
            a, b = sc["summary"].get(w), sc["summary"].get(sv)
            if not a or not b or not a.get("gen0_per_1k") or not b.get("gen0_per_1k"):
                continue
            g0w, g0s = a["gen0_per_1k"]["median"], b["gen0_per_1k"]["median"]
            cpu = sc["ratios"].get(scen.ratio_key(sv, w), {}).get("cpu_us_per_req")
            L.append(f"- {name}, {m}: gen0 per 1,000 requests {g0w:.3f} (workstation) vs "
                     f"{g0s:.3f} (server)"
                     + (f", workstation collects {g0w / g0s:.1f}× as often" if g0s else "")
                     + f"; GC pause share {pct2(median_of(a, 'gc_pause_share'))} vs "
                     f"{pct2(median_of(b, 'gc_pause_share'))}"
                     f"; CPU per request server ÷ workstation {stats.fmt_ratio(cpu, 2)}.")
    if not L:
        return []
    return ["**Server GC beside workstation GC** (same mode, same scenario, paired per "
            "round):", ""] + L + [""]


def priming_table(res):
    rows = []
    for name, sc in res["scenarios"].items():
        for lbl, steps in (sc.get("priming") or {}).items():
            s = sc["summary"].get(lbl)
            rows.append(f"| {name} | {lbl} | " + " → ".join(n(x) for x in steps)
                        + f" | {med(s['rps']) if s else '-'} |")
    if not rows:
        return []
    return ["**Priming pass** (req/s in each second of a twin process's warm-up before the "
            "scenario's rounds; tiered JIT compiles hot methods again, optimised, after "
            "their first calls):", "",
            "| scenario | target | req/s per second of priming | req/s in the rounds |",
            "|---|---|---|---|"] + rows + [""]


# --- system calls, micro-benchmark -----------------------------------------------------------

def syscalls_section(res):
    sc = res.get("syscalls") or {}
    if not sc:
        return []
    any_s = next(iter(sc.values()))
    labels = list(sc)
    names = sorted({k for d in sc.values() for k, v in d["per_request"].items() if v >= 0.01},
                   key=lambda k: -max(d["per_request"].get(k, 0) for d in sc.values()))
    L = ["## System calls per request (strace)", "",
         f"`strace -c -f` attached to every thread of the server while `h2load --h1` sends "
         f"{any_s['requests']:,} GET {any_s['path']} on {any_s['connections']} connections, "
         "one request in flight each; calls ÷ requests served. strace slows every call, so "
         "the rate is not the server's; the calls per request are (how many reads, writes, "
         "polls and yields a request takes). Calls under 0.01 per request are left out.", "",
         "| system call | " + " | ".join(labels) + " |",
         "|---|" + "---|" * len(labels)]
    for k in names:
        L.append(f"| `{k}` | " + " | ".join(n(sc[lbl]["per_request"].get(k), 2)
                                             for lbl in labels) + " |")
    L.append("| **all** | " + " | ".join(n(sum(sc[lbl]["per_request"].values()), 2)
                                         for lbl in labels) + " |")
    return L + [""]


def micro_section(res):
    mi = res.get("micro")
    if not mi:
        return []
    commit = (res["meta"].get("git_commit") or "")[:len(mi.get("commit") or "x")]
    how = (f"run by this bench (`make micro`, {mi['wall_s'] / 60:.1f} min)" if mi.get("ran")
           else f"read from `{mi.get('path')}`")
    L = ["### Beside it: the twin's micro-benchmark (BenchmarkDotNet)", "",
         f"{mi['header']}; {how}"
         + ("" if mi.get("commit") == commit else
            f" — **not this run's commit** (`{commit}`): the twin's code may differ") + ". "
         "One request's chain completing synchronously, per call: mean time and bytes "
         "allocated (MemoryDiagnoser), hotpath's columns' counterparts in the twin.", "",
         "| per call, synchronous | valuetask | task | task − valuetask | idiomatic `Task` / "
         "aspnet / HybridCache |", "|---|---|---|---|---|"]
    rows = mi["rows"]

    def cell(name):
        r = rows.get(name)
        if not r or r["mean_ns"] is None:
            return "-"
        return f"{r['mean_ns']:.1f} ns, {r['allocated_b'] or 0:.0f} B"
    for what, cols in micro.SIDE_BY_SIDE:
        v, t = rows.get(cols["valuetask"]), rows.get(cols["task"])
        diff = "-"
        if v and t and v["mean_ns"] is not None and t["mean_ns"] is not None:
            diff = (f"{t['mean_ns'] - v['mean_ns']:+.1f} ns, "
                    f"{(t['allocated_b'] or 0) - (v['allocated_b'] or 0):+.0f} B")
        L.append(f"| {what} | {cell(cols['valuetask'])} | {cell(cols['task'])} | {diff} "
                 f"| {cell(cols['other'])} ({cols['other']}) |")
    if mi["facts"]:
        L += ["", "HybridCache, checked by the same program:"] + [f"- {f}" for f in mi["facts"]]
    L += ["", "The whole of BenchmarkDotNet's tables (with its environment and job) is in "
          "`micro.md` beside this report.", ""]
    return L


# --- the whole report -------------------------------------------------------------------------

def render(res):
    m = res["meta"]
    p = m["params"]
    L = [f"# hotpath load test — {m['profile']} run, {m['date']}", "",
         "Task vs ValueTask, measured: hotpath serves the same requests in `valuetask` mode "
         "(synchronous paths allocate nothing) and in `task` mode (every valuetask is a heap "
         "task). The capped sweep finds the rates where the server runs out and where the "
         "modes part; the closed-loop scenarios compare them (and nginx, and the Kestrel twin: "
         "the same decision on .NET) at full speed. How to read it: `loadtest/README.md`.", ""]
    if m["profile"] == "quick":
        L += ["**Quick run**: one cap, one round per rate (the bands: "
              f"{p['band_rounds']}), scenarios in {p['rounds']} rounds of {p['duration_s']} s, "
              "the twin's valuetask and task modes in "
              + (", ".join(p["twin"]) if isinstance(p["twin"], dict) else f"{p['twin']} scenarios")
              + " only, no strace and no micro-benchmark (BenchmarkDotNet alone takes 2-10 "
              "minutes, which would take this run past its 3: `make bench` runs it, `make "
              "micro` by itself). "
              "Good for seeing that everything works "
              "and for large effects; `make bench` for figures to quote.", ""]
    commit = m.get("git_commit") or "unknown"
    L += ["## Machine and code", "",
          f"- commit `{commit}`" + (" **dirty** (uncommitted changes: not publishable)"
                                    if m.get("git_dirty") else " (clean tree)")
          + ("; published to `loadtest/results/latest/`" if m.get("published") else ""),
          f"- CPU: {m.get('cpu_model')}, {m['cores']} cores; memory {m.get('memory_gib')} GiB; "
          f"kernel {m['kernel']}; load average at the end {' '.join(m['load_average'])}",
          f"- pinning: servers on CPU {m['server_cpu']}, load generators and the upstream stub "
          f"on CPU {m['load_cpu']}; CPU cap: {m.get('cgroup') or 'none'}",
          f"- nginx {m.get('nginx')}; {m.get('wrk')}; {m.get('h2load')}; {m.get('valgrind')}; "
          f"{m.get('gnuplot')}",
          f"- wall clock of the whole run: {res['wall_s']:.0f} s ("
          + ", ".join(f"{k} {v:.0f} s" for k, v in res.get("part_wall_s", {}).items()) + ")",
          ] + ([f"- the Kestrel twin: .NET " + ", ".join(sorted(
              {str((d.get("describe") or {}).get("dotnet")) for d in res["runtimes"].values()}))
              + " (its GC settings: in its section below)"] if res.get("runtimes") else [])
    L += ["",
          "The machine is shared and noisy; " + spread_note(res) + " Treat differences "
          "within the spread as no difference.", ""]
    L += sweep_section(res)
    L += scenarios_section(res)
    L += twin_section(res)
    L += tiers.section(res)
    if any(sc.get("advice") for sc in res["scenarios"].values()):
        L += advice_section(res) + [""]
    L += ["## Instructions per request (callgrind)", ""]
    if res["callgrind"]:
        any_m = next(iter(next(iter(res["callgrind"].values())).values()))
        L += [f"A separate hotpath (workers 1) under `{res.get('callgrind_command')}`; per path "
              f"and mode, {p['callgrind_warmup']:,} warm-up requests, then the counters are "
              f"zeroed, {any_m['requests']:,} keep-alive requests are sent by `h2load --h1 "
              f"-c {any_m['connections']} -n {any_m['requests']}` and the counters dumped; "
              "instructions/request = the dump's total / requests. Deterministic: the difference "
              "between the modes shows even where wall-clock noise is larger. Counts cover all "
              "threads; the cache path is a hit (its key filled in the warm-up).", "",
              "| path | valuetask Ir/req | task Ir/req | task − vt | task/vt | allocs/req vt → task |",
              "|---|---|---|---|---|---|"]
        for path, d in res["callgrind"].items():
            v, t = d.get("valuetask"), d.get("task")
            if v and t:
                L.append(f"| {path} | {v['ir_per_request']:,.0f} | {t['ir_per_request']:,.0f} "
                         f"| {t['ir_per_request'] - v['ir_per_request']:+,.0f} "
                         f"| {t['ir_per_request'] / v['ir_per_request']:.3f} "
                         f"| {n(v['allocs_per_req'], 2)} → {n(t['allocs_per_req'], 2)} |")
    else:
        L.append("Not measured in this run.")
    L += [""] + micro_section(res) + syscalls_section(res)
    L += ["## Idle keep-alive connections (memory)", ""]
    if res["idle_memory"]:
        L += ["Each connection sent one GET /plaintext, read the answer and stayed open; RSS of "
              "the server (nginx: master + worker) from /proc before and 0.5 s after.", "",
              "| server | connections | RSS before | RSS after | growth per connection |",
              "|---|---|---|---|---|"]
        for name, d in res["idle_memory"].items():
            per = d["per_connection_bytes"]
            L.append(f"| {name} | {d['connections']:,}"
                     + (f" ({d['failed']} failed)" if d["failed"] else "")
                     + f" | {d['rss_before'] / 2**20:.1f} MiB | {d['rss_after'] / 2**20:.1f} MiB "
                     f"| {'-' if per is None else f'{per:,.0f} B'} |")
    else:
        L.append("Not measured in this run.")
    L.append("")
    if res["notes"]:
        L += ["## Notes from this run", ""] + [f"- {x}" for x in res["notes"]] + [""]
    L += ["## Commands", "", "Run from the repository root (ports were ephemeral; "
          "`HOTPATH_NONCE` was fresh per run so cold cache keys stay cold):", "", "```"]
    L += res["commands"] + ["```", "", "Raw numbers, every run: `results.json`.", ""]
    return "\n".join(L)


def write(res, out):
    """report.md, results.json and the plots into out; the file names."""
    os.makedirs(out, exist_ok=True)
    res["plots"] = plots(res.get("sweep"), out)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(render(res))
    files = ["report.md", "results.json"]
    if res.get("micro"):
        with open(os.path.join(out, "micro.md"), "w") as f:
            f.write(res["micro"]["text"])
        files.append("micro.md")
    return files + res["plots"]


def console_summary(res):
    """The lines printed at the end of a run."""
    L = []
    sw = res.get("sweep")
    if sw:
        L += [threshold_table(sw), ""]
    if res["scenarios"]:
        L += [summary_table(res, short=True), "", verdict_table(res)]
    return "\n".join(L)

