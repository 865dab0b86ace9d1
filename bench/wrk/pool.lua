-- wrk script for `make bench` (bench/run.py): a different credential on every
-- request, cycling through a pre-made pool (one token per line in a file), so
-- that a verified-credential cache smaller than the pool never hits.
--   wrk ... -s bench/wrk/pool.lua http://127.0.0.1:PORT/ -- FILE [OFFSET [HEADER [PREFIX]]]
-- OFFSET (default 0) is where in the pool to start: run.py carries it over from
-- run to run so a token comes back only after every other one of the pool has
-- been sent. HEADER defaults to "authorization", PREFIX to "Bearer ".
-- Requests are pre-formatted in init(), so request() costs a table lookup.
-- done() prints one machine-readable line (BENCH_JSON {...}) that run.py parses.

local requests_pool = {}
local n = 0
local i = 0

function init(args)
  local file = args[1] or error("pool.lua: no token file given (-- FILE [OFFSET])")
  local offset = tonumber(args[2] or "0")
  local header = args[3] or "authorization"
  local prefix = args[4] or "Bearer "
  for line in io.lines(file) do
    if #line > 0 then
      n = n + 1
      requests_pool[n] = wrk.format("GET", "/", { [header] = prefix .. line })
    end
  end
  if n == 0 then
    error("pool.lua: no tokens in " .. file)
  end
  i = offset % n
end

function request()
  i = i + 1
  if i > n then
    i = 1
  end
  return requests_pool[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
