-- wrk script for `make soak` (tests/soak/soak.py). Run with one connection per
-- thread (-c N -t N): a thread then has at most one request in flight, so every
-- response is attributed exactly to the request it answers.
--
--   wrk -t8 -c8 -d600s -s tests/soak/soak.lua http://127.0.0.1:PORT -- CONTROL_DIR
--
-- CONTROL_DIR (written by soak.py):
--   mix.txt         "version N", then one line per label: LABEL<TAB>WEIGHT<TAB>POOL_FILE<TAB>BUCKET_MS
--                   re-read every 250 ms; the controller changes it when keys rotate
--   pools/*.txt     immutable; one request variant per line:
--                   HEADER<TAB>VALUE<TAB>EXPECTED_PRINCIPAL ("-" when none: an invalid credential)
-- Output (CONTROL_DIR/out/):
--   thread-N.tsv    appended about every second: C<TAB>LABEL<TAB>BUCKET<TAB>STATUS<TAB>COUNT
--                   and L<TAB>LABEL<TAB>BUCKET<TAB>MAX_LATENCY_MS; BUCKET is the send
--                   time in ms since the epoch, floored to the label's BUCKET_MS
--   final.tsv       what the threads had not flushed yet, written by done()
--   summary.json    wrk's totals and socket errors
-- STATUS is the HTTP status, or "200-wrong" for a 200 whose principal (the
-- x-soak-principal response header the soak's route adds from the request's
-- x-auth-principal) is not the expected one, or that still carries the credential.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } soak_timeval;
int gettimeofday(soak_timeval *tv, void *tz);
]]
local tv = ffi.new("soak_timeval")
local function now()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

-- main Lua state: the threads, for done()
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- thread Lua states (dir and tid are globals: done() and setup() reach them)
dir = nil
local pools = {}        -- pool file -> list of {req = formatted request, principal = string|nil}
local schedule = {}     -- expanded weighted list of {label, pool, bucket_ms}
local pos = 0
local cursors = {}      -- pool file -> next index
local mix_text = nil
local next_check = 0
local pending = nil     -- the request in flight: {label, t, principal, bucket_ms}
local next_flush = 0
local out_path
counts = {}             -- "C\tlabel\tbucket\tstatus" -> n (global: done() reads what is left)
latmax = {}             -- "L\tlabel\tbucket" -> ms

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    table.insert(fields, field)
  end
  return fields
end

local function load_pool(label, file)
  local pool = {}
  for line in io.lines(dir .. "/" .. file) do
    if #line > 0 then
      local f = split(line)
      local headers = {}
      if f[1] ~= "-" then
        headers[f[1]] = f[2]
      end
      local principal = f[3]
      if principal == "-" then principal = nil end
      table.insert(pool, { req = wrk.format("GET", "/soak/" .. label, headers), principal = principal })
    end
  end
  if #pool == 0 then
    error("soak.lua: empty pool " .. file)
  end
  return pool
end

local function read_mix()
  local fh = io.open(dir .. "/mix.txt", "r")
  if not fh then return end
  local text = fh:read("*a")
  fh:close()
  if text == mix_text or not text:match("\nend\n$") then
    return -- unchanged, or caught half-written (the controller renames it into place anyway)
  end
  mix_text = text
  local entries = {}
  for line in text:gmatch("[^\n]+") do
    local f = split(line)
    if #f >= 4 then
      local label, weight, file, bucket_ms = f[1], tonumber(f[2]), f[3], tonumber(f[4])
      if not pools[file] then
        pools[file] = load_pool(label, file)
        -- threads start at different places in each pool
        cursors[file] = (tid * 7919) % #pools[file]
      end
      table.insert(entries, { label = label, weight = weight, file = file, bucket_ms = bucket_ms })
    end
  end
  -- Spread each label evenly over the schedule (smooth weighted round robin).
  local total = 0
  for _, e in ipairs(entries) do total = total + e.weight end
  local current = {}
  schedule = {}
  for _ = 1, total do
    local best = nil
    for i, e in ipairs(entries) do
      current[i] = (current[i] or 0) + e.weight
      if not best or current[i] > current[best] then best = i end
    end
    current[best] = current[best] - total
    table.insert(schedule, entries[best])
  end
  pos = tid % math.max(#schedule, 1)
end

local function flush()
  local fh = io.open(out_path, "a")
  if not fh then return end
  for key, n in pairs(counts) do
    fh:write(key, "\t", n, "\n")
  end
  for key, ms in pairs(latmax) do
    fh:write(key, "\t", ms, "\n")
  end
  fh:close()
  counts = {}
  latmax = {}
end

function init(args)
  dir = args[1] or error("soak.lua: no control directory given (-- CONTROL_DIR)")
  out_path = dir .. "/out/thread-" .. tid .. ".tsv"
  read_mix()
  if #schedule == 0 then
    error("soak.lua: empty mix in " .. dir .. "/mix.txt")
  end
  next_check = now() + 0.25
  next_flush = now() + 1
end

function request()
  local t = now()
  if t >= next_check then
    read_mix()
    next_check = t + 0.25
  end
  pos = pos % #schedule + 1
  local e = schedule[pos]
  local pool = pools[e.file]
  local i = cursors[e.file] % #pool + 1
  cursors[e.file] = i
  local v = pool[i]
  -- One request in flight per thread (one connection per thread): a request that was
  -- lost with its connection (a socket error wrk counts) is simply overwritten.
  pending = { label = e.label, t = t, principal = v.principal, bucket_ms = e.bucket_ms }
  return v.req
end

function response(status, headers, body)
  local t = now()
  local p = pending
  pending = nil
  if p then
    local st = tostring(status)
    if status == 200 and p.principal and (headers["x-soak-principal"] ~= p.principal
        or headers["x-soak-authorization"] or headers["x-soak-api-key"]) then
      st = "200-wrong"
    end
    local bucket = math.floor(p.t * 1000 / p.bucket_ms) * p.bucket_ms
    local key = "C\t" .. p.label .. "\t" .. string.format("%d", bucket) .. "\t" .. st
    counts[key] = (counts[key] or 0) + 1
    local lkey = "L\t" .. p.label .. "\t" .. string.format("%d", bucket)
    local ms = math.floor((t - p.t) * 1000 + 0.5)
    if not latmax[lkey] or ms > latmax[lkey] then latmax[lkey] = ms end
  end
  if t >= next_flush then
    flush()
    next_flush = t + 1
  end
end

function done(summary, latency, requests)
  local d = nil
  local fh = nil
  for _, thread in ipairs(threads) do
    d = d or thread:get("dir")
    local c = thread:get("counts") or {}
    local l = thread:get("latmax") or {}
    fh = fh or io.open(thread:get("dir") .. "/out/final.tsv", "w")
    for key, n in pairs(c) do fh:write(key, "\t", n, "\n") end
    for key, ms in pairs(l) do fh:write(key, "\t", ms, "\n") end
  end
  if fh then fh:close() end
  if d then
    local e = summary.errors
    local s = io.open(d .. "/out/summary.json", "w")
    s:write(string.format(
      '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d,"p99_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
      latency:percentile(99), latency.max))
    s:close()
  end
end
