-- POST /_matrix/client/v3/refresh, each request rotating a live refresh token. The token file
-- (path in $MYELIN_TOKENS, one refresh token a line) is split between the wrk threads; each
-- thread keeps its share in a first-in first-out pool: request() takes the oldest token out,
-- response() appends the new refresh_token of a 200 body, so every session is rotated in turn.
-- Run with no more connections per thread than tokens per thread, so a token is never in two
-- requests (each connection has one request in flight).
-- Non-200 answers are counted by wrk (errors.status); a 200 whose body has no refresh_token is
-- counted in `no_token`, and a request sent while the pool was empty (a bogus token, answered
-- 401) in `pool_empty`.

dofile((os.getenv("MYELIN_BENCH_LOAD") or "bench/load") .. "/report.lua")

local nthreads = tonumber(os.getenv("MYELIN_WRK_THREADS") or "1")
-- Globals, so that done() can read them with thread:get(). The pool is pool[head..tail].
pool = {}
head = 1
tail = 0
no_token = 0
pool_empty = 0
rotated = 0

function init(args)
   local path = os.getenv("MYELIN_TOKENS") or args[1]
   local k = 0
   for line in io.lines(path) do
      if #line > 0 then
         if k % nthreads == (id or 0) then
            tail = tail + 1
            pool[tail] = line
         end
         k = k + 1
      end
   end
   if tail == 0 then error("no refresh tokens for thread " .. tostring(id)) end
   wrk.method = "POST"
   wrk.path = "/_matrix/client/v3/refresh"
   wrk.headers["Content-Type"] = "application/json"
end

function request()
   local token
   if head > tail then
      pool_empty = pool_empty + 1
      token = "myrt_pool_was_empty"
   else
      token = pool[head]
      pool[head] = nil
      head = head + 1
   end
   return wrk.format(nil, nil, nil, '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
   if status == 200 then
      local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
      if token then
         rotated = rotated + 1
         tail = tail + 1
         pool[tail] = token
      else
         no_token = no_token + 1
      end
   end
end

-- With $MYELIN_TOKENS_OUT set, the live refresh tokens left in the pools are written there at
-- the end (one a line), so that a later run can go on rotating the same sessions: the tokens of
-- the file read at the start are spent, and presenting one again is a reuse (403, session
-- revoked). A token whose request was in flight when wrk stopped is lost with its session.
extra_report = function(threads)
   local out = {no_token = 0, pool_empty = 0, rotated = 0, pool_left = 0}
   local left = {}
   for _, t in ipairs(threads) do
      out.no_token = out.no_token + (t:get("no_token") or 0)
      out.pool_empty = out.pool_empty + (t:get("pool_empty") or 0)
      out.rotated = out.rotated + (t:get("rotated") or 0)
      local first, last = t:get("head") or 1, t:get("tail") or 0
      out.pool_left = out.pool_left + (last - first + 1)
      local p = t:get("pool") or {}
      for i = first, last do
         if p[i] then left[#left + 1] = p[i] end
      end
   end
   local path = os.getenv("MYELIN_TOKENS_OUT")
   if path and #path > 0 then
      local f = assert(io.open(path, "w"))
      for _, token in ipairs(left) do f:write(token, "\n") end
      f:close()
   end
   return out
end
