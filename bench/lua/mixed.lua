-- A mixed workload for wrk (bench/soak.sh): reads, lists, creates and deletes (as
-- many), and the 4xx a real client causes (unknown id, invalid task). Counts
-- answers by class per thread; done() prints them as "classes 2xx=.. 4xx=.. 5xx=.. other=..".
-- IDS (comma-separated existing task ids) and DELAY_MS (pause per request and
-- connection, which sets the rate) come from the environment.

local ids = {}
for id in string.gmatch(os.getenv("IDS") or "", "[^,]+") do ids[#ids + 1] = id end
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local threads = {}
local counter = 0
-- Globals, not locals: done() reads them from each thread with thread:get().
c2, c4, c5, other = 0, 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + #threads)
end

local create = '{"title":"soak task","description":"created under load","tags":["soak"],"priority":4}'
local invalid = '{"title":"","priority":9}'
local json = { ["content-type"] = "application/json" }
local created = {}

function request()
  counter = counter + 1
  local r = counter % 20
  if r < 12 then
    return wrk.format("GET", "/api/tasks/" .. ids[math.random(#ids)])
  elseif r < 15 then
    return wrk.format("GET", "/api/tasks?limit=20")
  elseif r < 16 then
    return wrk.format("POST", "/api/tasks", json, create)
  elseif r < 18 then
    -- Delete what this connection's thread created, so the data set stays the
    -- same size and memory can be compared over the run.
    local loc = table.remove(created)
    if loc then return wrk.format("DELETE", loc) end
    return wrk.format("GET", "/api/tasks/" .. ids[math.random(#ids)])
  elseif r < 19 then
    return wrk.format("GET", "/api/tasks/ffffffffffffffffffffffff")
  else
    return wrk.format("POST", "/api/tasks", json, invalid)
  end
end

function response(status, headers, body)
  local loc = headers["location"] or headers["Location"]
  if status == 201 and loc then table.insert(created, loc) end
  if status >= 200 and status < 300 then c2 = c2 + 1
  elseif status >= 400 and status < 500 then c4 = c4 + 1
  elseif status >= 500 then c5 = c5 + 1
  else other = other + 1 end
end

function delay()
  return delay_ms
end

function done(summary, latency, requests)
  local t2, t4, t5, t0 = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    t2 = t2 + t:get("c2"); t4 = t4 + t:get("c4"); t5 = t5 + t:get("c5"); t0 = t0 + t:get("other")
  end
  io.write(string.format("classes 2xx=%d 4xx=%d 5xx=%d other=%d\n", t2, t4, t5, t0))
end
