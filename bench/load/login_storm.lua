-- POST /_matrix/client/v3/login like a crowd of well-behaved clients: the right password for one
-- user and a fixed device_id, and after a 429 or 503 each connection waits the Retry-After the
-- server asked for before trying again (a client that ignores it is a flood, which the per-IP
-- limiter answers, not the hashing queue). User and password from $MYELIN_USER and
-- $MYELIN_PASSWORD. Used by bench/login_storm.py.

dofile((os.getenv("MYELIN_BENCH_LOAD") or "bench/load") .. "/report.lua")

wrk.method = "POST"
wrk.path = "/_matrix/client/v3/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format(
   '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"%s"},' ..
   '"password":"%s","device_id":"WRKSTORM"}',
   os.getenv("MYELIN_USER") or "bench", os.getenv("MYELIN_PASSWORD") or "bench-password")

local wait_ms = 0
local shed = 0

function response(status, headers, body)
   wait_ms = 0
   if status == 429 or status == 503 then
      shed = shed + 1
      local after = tonumber(headers["Retry-After"] or headers["retry-after"] or "1") or 1
      wait_ms = after * 1000
   end
end

function delay()
   return wait_ms
end


extra_report = function(threads)
   local total = 0
   for _, t in ipairs(threads) do total = total + (t:get("shed") or 0) end
   return {shed = total}
end
