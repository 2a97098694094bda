-- upstream.lua - GET /upstream/items/x: proxied to the upstream stub's
-- /items/x, always asynchronous in hotpath (a task); nginx's counterpart is
-- proxy_pass with an upstream keepalive pool to the same stub.
--   wrk -t1 -c64 -d10s -s loadtest/upstream.lua http://127.0.0.1:8080
-- The key is the first script argument or $HOTPATH_UPSTREAM_KEY (default x).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local req

function init(args)
   req = wrk.format("GET", "/upstream/items/" .. hotpath.param(args, 1, "HOTPATH_UPSTREAM_KEY", "x"))
end

function request()
   return req
end
