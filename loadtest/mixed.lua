-- mixed.lua - a blend of the other scenarios on each connection, in a fixed
-- repeating order of 20 requests:
--    8  GET /plaintext          (40%)
--    4  GET /json               (20%)
--    5  GET /cache/hot{0..15}   (25%, hits after the first fill)
--    1  GET /cache/cold-...     ( 5%, misses: upstream fetch)
--    2  GET /upstream/items/x   (10%, always asynchronous)
-- So ~85% of requests can complete synchronously - the "usually
-- synchronous hot path" the ValueTask guidance is about.
--   wrk -t1 -c64 -d10s -s loadtest/mixed.lua http://127.0.0.1:8080 -- NONCE
-- The nonce (argument 1 or $HOTPATH_NONCE, default os.time()) keeps cold
-- keys cold across runs.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local threads = 0

function setup(thread)
   thread:set("tid", threads)
   threads = threads + 1
end

local pattern = { "p", "j", "h", "p", "u", "p", "j", "h", "p", "c",
                  "p", "h", "j", "p", "u", "h", "p", "j", "h", "p" }
local fixed, nonce, i, hot, cold = {}, "0", 0, 0, 0

function init(args)
   nonce = hotpath.param(args, 1, "HOTPATH_NONCE", tostring(os.time())) .. "-" .. tostring(tid or 0)
   fixed.p = wrk.format("GET", "/plaintext")
   fixed.j = wrk.format("GET", "/json")
   fixed.u = wrk.format("GET", "/upstream/items/x")
   fixed.h = {}
   for k = 1, 16 do fixed.h[k] = wrk.format("GET", "/cache/hot" .. (k - 1)) end
end

function request()
   i = i % #pattern + 1
   local kind = pattern[i]
   if kind == "h" then
      hot = hot % #fixed.h + 1
      return fixed.h[hot]
   elseif kind == "c" then
      cold = cold + 1
      return wrk.format("GET", "/cache/cold-" .. nonce .. "-" .. cold)
   end
   return fixed[kind]
end
