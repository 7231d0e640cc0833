-- wrk script for deploy/bench/bench.py: POSTs the TeleCMI fixtures (one compact JSON template
-- per line of $BENCH_TEMPLATES, "@ID@" where the conversation ids go) in turn, each request
-- with its own conversation id, so the bridge does the full per-request work.
--   BENCH_CLOSE=1       a new connection per request (Connection: close)
--   BENCH_DELAY_MS=N    each connection waits N ms between requests (a fixed offered rate)
--   BENCH_RESULT=FILE   the summary is written there as JSON
local templates = {}
for line in io.lines(os.getenv("BENCH_TEMPLATES")) do
  templates[#templates + 1] = line
end
local close = os.getenv("BENCH_CLOSE") == "1"
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")

-- Numbered in the main Lua state; setup() sets the global thread_number in each thread's state.
local threads_started = 0
setup = function(thread)
  threads_started = threads_started + 1
  thread:set("thread_number", threads_started)
end

local counter = 0
request = function()
  counter = counter + 1
  local id = string.format("bench-%d-%d", thread_number or 0, counter)
  local body = templates[counter % #templates + 1]:gsub("@ID@", id)
  local headers = { ["Content-Type"] = "application/json" }
  if close then
    headers["Connection"] = "close"
  end
  return wrk.format("POST", nil, headers, body)
end

if pause > 0 then
  delay = function()
    return pause
  end
end

-- errors.status counts answers with a status of 400 or more.
done = function(summary, latency, requests)
  local file = io.open(os.getenv("BENCH_RESULT"), "w")
  file:write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
  file:close()
end
