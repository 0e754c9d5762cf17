-- GET /_matrix/client/v3/account/whoami, a different access token on every request: each wrk
-- thread loads the token file (one token a line; path in $MYELIN_TOKENS), prebuilds one request
-- per token and walks them round robin from its own starting offset.
-- Usage: MYELIN_TOKENS=tokens.txt wrk -s whoami.lua http://127.0.0.1:PORT

dofile((os.getenv("MYELIN_BENCH_LOAD") or "bench/load") .. "/report.lua")

local reqs = {}
local n = 0
local i = 0

function init(args)
   local path = os.getenv("MYELIN_TOKENS") or args[1]
   for line in io.lines(path) do
      if #line > 0 then
         n = n + 1
         reqs[n] = wrk.format("GET", "/_matrix/client/v3/account/whoami",
                              {["Authorization"] = "Bearer " .. line})
      end
   end
   if n == 0 then error("no tokens in " .. path) end
   i = ((id or 0) * 7919) % n  -- spread the threads' starting points
end

function request()
   i = i % n + 1
   return reqs[i]
end
