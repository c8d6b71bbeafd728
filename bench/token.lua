-- wrk script: POST a client-credentials token request with HTTP Basic client authentication.
-- The Basic credentials come from the environment variable BENCH_BASIC ("base64(id:secret)").
-- No response() callback on purpose (it would make wrk parse every body in Lua); wrk's own
-- "Non-2xx or 3xx responses" count is checked by bench/token.sh instead.
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BENCH_BASIC")
