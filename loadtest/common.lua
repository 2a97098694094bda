-- common.lua - what every hotpath wrk script shares: the result line.
--
-- Loaded by each script with dofile (wrk runs one script per Lua state, so
-- the scripts find this file next to themselves through debug.getinfo).
-- done() prints one machine-parseable line for loadtest/bench.py:
--
--   HOTPATH_RESULT {"tool":"wrk","requests":..,"duration_s":..,"rps":..,
--     "latency_us":{"p50":..,"p90":..,"p99":..,"p99_9":..,"max":..,"mean":..},
--     "errors":{"connect":..,"read":..,"write":..,"timeout":..,"status":..}}
--
-- Latencies are wrk's: closed loop, from each request's write to its
-- answer (so a stalled server sends fewer requests instead of showing the
-- stall; the fixed-rate sweep with build/hotpath-load is the open-loop
-- view). errors.status is wrk's count of answers with status >= 400.

hotpath = hotpath or {}

function hotpath.result_line(summary, latency, extra)
   local d = summary.duration / 1e6
   local e = summary.errors
   local fields = {
      string.format('"tool":"wrk","requests":%d,"duration_s":%.3f,"rps":%.1f',
                    summary.requests, d, d > 0 and summary.requests / d or 0),
      string.format('"bytes":%d', summary.bytes),
      string.format('"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p99_9":%.1f,'
                       .. '"max":%.1f,"mean":%.1f,"stdev":%.1f}',
                    latency:percentile(50), latency:percentile(90),
                    latency:percentile(99), latency:percentile(99.9),
                    latency.max, latency.mean, latency.stdev),
      string.format('"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d}',
                    e.connect, e.read, e.write, e.timeout, e.status),
   }
   if extra then fields[#fields + 1] = extra end
   io.write("HOTPATH_RESULT {" .. table.concat(fields, ",") .. "}\n")
end

-- The first argument after "--", else the environment variable, else dflt.
function hotpath.param(args, i, env, dflt)
   local v = args and args[i] or os.getenv(env)
   if v == nil or v == "" then return dflt end
   return v
end

function done(summary, latency, requests)
   hotpath.result_line(summary, latency, hotpath.extra)
end
