-- wrk script for benches/compare.sh: every request asks for an order no one has asked for
-- before: /v1/customers/<customer>/orders/<guid>, the GUID made of the run's seed (unique per
-- run, given by the script), the wrk thread and a per-thread counter.
-- Usage: wrk ... -s miss.lua URL -- CUSTOMER_GUID SEED
-- Headers given with -H (Authorization) go on every request.

local customer
local prefix
local counter = 0

function setup(thread)
  thread_index = (thread_index or 0) + 1
  thread:set("tid", thread_index)
end

function init(args)
  customer = args[1]
  local seed = tonumber(args[2]) or os.time()
  math.randomseed(seed + 104729 * (tid or 1))
  -- 8-4-4- : seed (low 32 bits), thread, version nibble + random; counter in the last 4-12.
  prefix = string.format("/v1/customers/%s/orders/%08x-%04x-4%03x-", customer,
    seed % 4294967296, (tid or 1) % 65536, math.random(0, 4095))
end

function request()
  counter = counter + 1
  local path = string.format("%s%04x-%012x", prefix, 32768 + (counter % 16384),
    counter)
  return wrk.format("GET", path)
end
