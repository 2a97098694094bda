-- pipeline.lua - GET /plaintext, 16 requests per write, as TechEmpower's
-- plaintext test does. wrk counts each answer as one request.
--   wrk -t1 -c64 -d10s -s loadtest/pipeline.lua http://127.0.0.1:8080 -- 16
-- The depth is the first script argument or $HOTPATH_PIPELINE (default 16).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local req

function init(args)
   local depth = tonumber(hotpath.param(args, 1, "HOTPATH_PIPELINE", "16"))
   local one = wrk.format("GET", "/plaintext")
   req = string.rep(one, depth)
end

function request()
   return req
end
