-- json.lua - GET /json: {"message":"Hello, World!"}, serialized per request
-- by the server (cJSON in hotpath; a constant string in nginx).
--   wrk -t1 -c64 -d10s -s loadtest/json.lua http://127.0.0.1:8080
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

wrk.path = "/json"
