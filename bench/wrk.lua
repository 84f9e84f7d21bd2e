-- One wrk script for every l402-nginx benchmark, driven by environment variables (set by bench/lib.ts):
--   L402_AUTH=<value>        a fixed Authorization header (reusable credential)
--   L402_CREDS=<file>        one Authorization value per line; each thread takes every Nth line, each used once
--   L402_THREADS=<n>         wrk's -t, so threads split L402_CREDS without overlap
--   L402_COUNT_STATUS=1      count responses per status code (costs some client CPU: only where needed)
--   L402_DELAY_MS=<ms>       think time per connection (moderate, fixed-ish load for latency)
--   L402_RANDOM_PATH=<pfx>   a fresh path <pfx><random> on every request (memory bench: unbounded keys)
--   L402_HEADERS=<a: b|c: d> extra request headers ("|"-separated), e.g. to call l402d's /_l402/auth directly
-- done() prints one line: WRK_JSON {...}

local auth = os.getenv("L402_AUTH")
if auth then wrk.headers["Authorization"] = auth end
wrk.headers["Accept"] = "application/json"
for pair in string.gmatch(os.getenv("L402_HEADERS") or "", "[^|]+") do
  local name, value = pair:match("^%s*([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local delay_ms = tonumber(os.getenv("L402_DELAY_MS") or "")
if delay_ms then
  function delay()
    return delay_ms
  end
end

local creds_file = os.getenv("L402_CREDS")
local random_prefix = os.getenv("L402_RANDOM_PATH")

if creds_file then
  function request()
    ci = ci + 1
    if ci > #creds then
      -- Out of fresh credentials: replays from here on (counted, and visible as 401s).
      ci = 1
      exhausted = exhausted + 1
    end
    return creds[ci]
  end
elseif random_prefix then
  local alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
  function request()
    n = n + 1
    local parts = { random_prefix, tostring(id), "-", tostring(n), "-" }
    for _ = 1, 40 do
      local k = math.random(1, #alphabet)
      parts[#parts + 1] = alphabet:sub(k, k)
    end
    return wrk.format(nil, table.concat(parts))
  end
end

function init(args)
  counts = {}
  exhausted = 0
  n = 0
  math.randomseed(id * 7919)
  if creds_file then
    local nthreads = tonumber(os.getenv("L402_THREADS") or "1")
    creds = {}
    ci = 0
    local i = 0
    -- wrk.format replaces wrk.headers with the table it is given: copy them, and build every request
    -- up front so the run itself only hands out strings.
    local headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    for line in io.lines(creds_file) do
      if i % nthreads == id - 1 then
        headers["Authorization"] = line
        creds[#creds + 1] = wrk.format(nil, nil, headers)
      end
      i = i + 1
    end
  end
  if os.getenv("L402_COUNT_STATUS") then
    response = function(status, headers, body)
      local k = tostring(status)
      counts[k] = (counts[k] or 0) + 1
    end
  end
end

function done(summary, latency, requests)
  local statuses = {}
  local exhausted_total = 0
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    if c then
      for k, v in pairs(c) do statuses[k] = (statuses[k] or 0) + v end
    end
    exhausted_total = exhausted_total + (t:get("exhausted") or 0)
  end
  local parts = {}
  for k, v in pairs(statuses) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f,"exhausted":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    exhausted_total, table.concat(parts, ",")))
end
