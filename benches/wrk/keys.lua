-- wrk script for benches/compare.sh: each request picks one of the order paths listed in a
-- file (one per line), at random. Usage: wrk ... -s keys.lua URL -- PATHS_FILE [SEED]
-- Headers given with -H (Authorization) go on every request.

local paths = {}
local n = 0

function setup(thread)
  thread_index = (thread_index or 0) + 1
  thread:set("tid", thread_index)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      paths[n] = line
    end
  end
  assert(n > 0, "no paths in " .. tostring(args[1]))
  math.randomseed((tonumber(args[2]) or os.time()) + 7919 * (tid or 1))
end

function request()
  return wrk.format("GET", paths[math.random(n)])
end
