-- POST /_matrix/client/v3/login with the right password for one user and a fixed device_id
-- (every login replaces the previous session on that device). User and password come from
-- $MYELIN_USER and $MYELIN_PASSWORD. Non-200 answers are counted by wrk (errors.status).

dofile((os.getenv("MYELIN_BENCH_LOAD") or "bench/load") .. "/report.lua")

wrk.method = "POST"
wrk.path = "/_matrix/client/v3/login"
wrk.headers["Content-Type"] = "application/json"
-- A JSON string's content: backslashes, quotes and control characters escaped (a --target
-- account's password may hold any of them).
local function json_escape(s)
   return (s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end))
end

wrk.body = string.format(
   '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"%s"},' ..
   '"password":"%s","device_id":"WRKLOGIN"}',
   json_escape(os.getenv("MYELIN_USER") or "bench"),
   json_escape(os.getenv("MYELIN_PASSWORD") or "bench-password"))
