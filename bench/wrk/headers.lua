-- wrk script for `make bench` (bench/run.py): the same request every time, with
-- the headers given after `--` as "name: value" arguments, e.g.
--   wrk ... -s bench/wrk/headers.lua http://127.0.0.1:PORT/ -- "authorization: Bearer eyJ..."
-- No request() function, so wrk sends one pre-built request (its fastest path).
-- done() prints one machine-readable line (BENCH_JSON {...}) that run.py parses.

function init(args)
  for _, arg in ipairs(args) do
    local name, value = arg:match("^([^:]+):%s*(.*)$")
    if not name then
      error("header argument must be 'name: value', got: " .. arg)
    end
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
