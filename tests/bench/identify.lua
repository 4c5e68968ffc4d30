-- wrk script: POST identify-face with the body in $BODY_FILE and token $TOKEN; counts
-- HTTP statuses per thread and prints them with p50/p99 at the end.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    codes = {}
    local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
    wrk.body = f:read("*a")
    f:close()
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Accesstoken"] = os.getenv("TOKEN")
end

function response(status, headers, body)
    codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
    local total, ok = 0, 0
    local line = ""
    local merged = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("codes")) do
            merged[k] = (merged[k] or 0) + v
        end
    end
    for k, v in pairs(merged) do
        total = total + v
        if k == 200 then ok = ok + v end
        line = line .. string.format(" http_%d=%d", k, v)
    end
    local secs = summary.duration / 1e6
    io.write(string.format(
        "RESULT requests=%d ok=%d non_200=%d socket_errors=%d throughput_rps=%.1f ok_rps=%.1f p50_ms=%.1f p99_ms=%.1f%s\n",
        total, ok, total - ok,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        total / secs, ok / secs,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, line))
end
