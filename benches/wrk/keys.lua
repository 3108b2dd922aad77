-- wrk script for benches/compare.sh: each request picks one of the order paths listed in a
-- file (one per line), at random. Usage: wrk ... -s keys.lua URL -- PATHS_FILE [SEED]
-- Headers given with -H (Authorization) go on every request.
-- Every request's bytes are formatted once, at start-up: per request the client only draws a
-- random number, so its core spends as little as it can on anything but the sockets.

local requests = {}
local n = 0

function setup(thread)
  thread_index = (thread_index or 0) + 1
  thread:set("tid", thread_index)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      requests[n] = wrk.format("GET", line)
    end
  end
  assert(n > 0, "no paths in " .. tostring(args[1]))
  math.randomseed((tonumber(args[2]) or os.time()) + 7919 * (tid or 1))
end

function request()
  return requests[math.random(n)]
end
