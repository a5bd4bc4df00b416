-- Replays prepared requests, each line used once (cycled only when the file is
-- shorter than the run, e.g. a single ping), and stops after a request budget
-- (the first thread to spend its share ends the run) or wrk's -d, if sooner.
--
-- wrk -s replay.lua URL -- <requests file> <request budget> <wrk threads>
-- File lines: METHOD \t PATH \t BODY [\t Header: value ...]; thread k of n
-- takes lines k, k+n, k+2n... so no two threads send the same line.
-- done() prints one line "BENCH_RESULT {json}" that bench/load.py parses.

ffi = require("ffi")
ffi.cdef[[
typedef unsigned long pthread_t;
pthread_t pthread_self(void);
int pthread_kill(pthread_t thread, int sig);
]]

local threads = {}
local counter = 0

function setup(thread)
  thread:set("main_thread", tonumber(ffi.C.pthread_self()))
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests, budget, sent, answered = {}, 0, 0, 0
s2xx, s3xx, s4xx, s5xx = 0, 0, 0, 0

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do table.insert(fields, field) end
  return fields
end

function init(args)
  local path, nthreads = args[1], tonumber(args[3])
  budget = math.ceil(tonumber(args[2]) / nthreads)
  local index = 0
  for line in io.lines(path) do
    if index % nthreads == tid then
      local f = split(line)
      local headers = {}
      for i = 4, #f do
        local name, value = f[i]:match("^([^:]+):%s*(.*)$")
        if name then headers[name] = value end
      end
      if f[3] ~= "" then headers["Content-Type"] = "application/json" end
      table.insert(requests, wrk.format(f[1], f[2], headers, f[3] ~= "" and f[3] or nil))
    end
    index = index + 1
  end
end

function request()
  sent = sent + 1
  return requests[((sent - 1) % #requests) + 1]
end

function response(status, headers, body)
  if status < 300 then s2xx = s2xx + 1
  elseif status < 400 then s3xx = s3xx + 1
  elseif status < 500 then s4xx = s4xx + 1
  else s5xx = s5xx + 1 end
  answered = answered + 1
  if answered == budget then finish() end
end

-- wrk's main thread sleeps for the whole -d; a SIGINT delivered to that thread
-- ends the run early, and wrk still reports (and calls done()) with the true
-- elapsed time. A process-wide kill could land on any thread, so signal the
-- main thread itself (its id is taken in setup(), which runs on it).
function finish()
  wrk.thread:stop()
  ffi.C.pthread_kill(ffi.cast("pthread_t", main_thread), 2)
end

function done(summary, latency, requests)
  local totals = {s2xx = 0, s3xx = 0, s4xx = 0, s5xx = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do totals[name] = totals[name] + thread:get(name) end
  end
  local e = summary.errors
  local parts = {
    string.format('"requests": %d', summary.requests),
    string.format('"duration_us": %d', summary.duration),
    string.format('"socket_errors": %d', e.connect + e.read + e.write + e.timeout),
    string.format('"mean_us": %.1f', latency.mean),
    string.format('"max_us": %d', latency.max),
  }
  for _, p in ipairs({50, 90, 99, 99.9}) do
    table.insert(parts, string.format('"p%s_us": %d', tostring(p), latency:percentile(p)))
  end
  for name, value in pairs(totals) do
    table.insert(parts, string.format('"%s": %d', name, value))
  end
  io.write("BENCH_RESULT {" .. table.concat(parts, ", ") .. "}\n")
end
