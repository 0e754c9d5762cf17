-- Shared by every wrk script of bench/load (and used alone for plain GETs): at the end of a run,
-- prints one line "MYELIN_WRK_JSON {...}" with wrk's summary and latency percentiles (µs) for
-- bench/run_bench.py. A script that loads this file may set `extra_report(threads)` to add
-- fields gathered from its threads (returned as a table of numbers).

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
   if setup_thread then setup_thread(thread, #threads - 1) end
end

function done(summary, latency, requests)
   local e = summary.errors
   local fields = {
      string.format('"duration_us":%d', summary.duration),
      string.format('"requests":%d', summary.requests),
      string.format('"bytes":%d', summary.bytes),
      string.format('"err_connect":%d', e.connect),
      string.format('"err_read":%d', e.read),
      string.format('"err_write":%d', e.write),
      string.format('"err_status":%d', e.status),
      string.format('"err_timeout":%d', e.timeout),
      string.format('"lat_mean_us":%.1f', latency.mean),
      string.format('"lat_max_us":%d', latency.max),
   }
   for _, p in ipairs({50, 75, 90, 99, 99.9}) do
      table.insert(fields, string.format('"lat_p%s_us":%d', tostring(p):gsub("%.", "_"),
                                         latency:percentile(p)))
   end
   if extra_report then
      for k, v in pairs(extra_report(threads)) do
         table.insert(fields, string.format('"%s":%s', k, tostring(v)))
      end
   end
   io.write("MYELIN_WRK_JSON {" .. table.concat(fields, ",") .. "}\n")
end
