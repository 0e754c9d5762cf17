-- POST /_matrix/client/v3/login with the right password for one user and a fixed device_id
-- (every login replaces the previous session on that device). User and password come from
-- $MYELIN_USER and $MYELIN_PASSWORD. Non-200 answers are counted by wrk (errors.status).

dofile((os.getenv("MYELIN_BENCH_LOAD") or "bench/load") .. "/report.lua")

wrk.method = "POST"
wrk.path = "/_matrix/client/v3/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format(
   '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"%s"},' ..
   '"password":"%s","device_id":"WRKLOGIN"}',
   os.getenv("MYELIN_USER") or "bench", os.getenv("MYELIN_PASSWORD") or "bench-password")
