-- cache.lua - GET /cache/{key} at a chosen hit ratio: a small set of hot
-- keys (filled on first use, then hits that complete synchronously) and a
-- stream of cold keys never asked for before (each one a miss that fetches
-- /items/{key} from the upstream stub).
--
--   wrk -t1 -c64 -d10s -s loadtest/cache.lua http://127.0.0.1:8080 -- 0.95
--
-- Arguments after "--" (or environment variables):
--   1  hit ratio, 0..1         $HOTPATH_HIT_RATIO   default 0.95
--   2  run nonce for cold keys $HOTPATH_NONCE       default os.time()
--   3  number of hot keys      $HOTPATH_HOT_KEYS    default 16
--
-- The mix is deterministic, not random: an accumulator adds the ratio per
-- request and sends a hot key whenever it passes 1, so every window of 100
-- requests has the ratio's share of hot keys (give or take one). The nonce
-- keeps cold keys cold across runs against the same server; the runner
-- passes a fresh one per run. The measured hit ratio is in /stats (cache
-- hits and misses) - the first request for each hot key is a miss.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local threads = 0

function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

local ratio, nonce, hot, acc, cold, i = 0.95, "0", {}, 0, 0, 0

function init(args)
   ratio = tonumber(hotpath.param(args, 1, "HOTPATH_HIT_RATIO", "0.95"))
   nonce = hotpath.param(args, 2, "HOTPATH_NONCE", tostring(os.time()))
   local nhot = tonumber(hotpath.param(args, 3, "HOTPATH_HOT_KEYS", "16"))
   for k = 1, nhot do
      hot[k] = wrk.format("GET", "/cache/hot" .. (k - 1))
   end
   nonce = nonce .. "-" .. tostring(tid or 0)
end

function request()
   acc = acc + ratio
   if acc >= 1 then
      acc = acc - 1
      i = i % #hot + 1
      return hot[i]
   end
   cold = cold + 1
   return wrk.format("GET", "/cache/cold-" .. nonce .. "-" .. cold)
end
