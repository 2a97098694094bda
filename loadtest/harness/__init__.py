"""The load test's parts, by job (bench.py, soak.py and dashboard_cost.py
are their callers):

  procs      start, pin, wait for and stop processes; bounded commands
  cgroup     the CPU cap: a cgroup (v1 cpu or v2 cpu.max) made and removed per run
  targets    the servers under test as data (Runtime) and running (Server)
  measure    wrk, hotpath-load, CPU and memory reads, callgrind, strace, idle memory
  stats      medians, spreads, paired ratios, the chance of a finding by noise
  threshold  the capped sweep's verdicts: held, limited by, saturation, parting
  sweep      the capped sweep itself
  scenarios  the closed-loop wrk scenarios
  micro      the twin's BenchmarkDotNet tables (`make micro`), read for the report
  tiers      the L1 and L2 hit loads; 3 instances against 1 behind HAProxy
  report     report.md, results.json, plots; where they go, publishing
"""
