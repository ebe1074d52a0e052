-- wrk script of BenchmarkRouterVsNginx: requests go to the hosts
-- app1.DOMAIN … appN.DOMAIN in turn, round-robin.
--   wrk … -s hosts.lua URL -- N DOMAIN
-- The requests are made once, in init, so that each costs wrk no more than
-- a table lookup.
local reqs = {}
local i = 0

function init(args)
   local n = tonumber(args[1])
   local domain = args[2]
   for k = 1, n do
      reqs[k] = wrk.format("GET", "/", { Host = "app" .. k .. "." .. domain })
   end
end

function request()
   i = i % #reqs + 1
   return reqs[i]
end
