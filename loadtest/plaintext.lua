-- plaintext.lua - GET /plaintext over keep-alive connections, one request
-- in flight per connection (TechEmpower "plaintext" without pipelining).
--   wrk -t1 -c64 -d10s -s loadtest/plaintext.lua http://127.0.0.1:8080
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

wrk.path = "/plaintext"
