"""``make bench``: wave measured against the upstream registry it proxies, in one run, on loopback.

Run as ``python -m tests.bench`` (see ``--help``). It starts the lab registry holding the lab images (with the
200 MiB layer), wave as a separate process (embedded store, state in a temporary directory) and a counting
proxy in front of the registry, then runs each scenario against wave and against the registry directly. The
ratios are what to compare across machines: absolute numbers depend on the machine and its load.

Scenarios (``--only``): ``manifest`` (wrk on an augmented manifest by tag, warm, against the registry's own),
``blob`` (the 200 MiB layer with curl, best of N each way, and wave's peak RSS growth meanwhile), ``cold`` (100
concurrent first requests of a new token, upstream manifest fetches counted by the proxy in front of the
registry), ``token`` (container requests per second with wrk POSTing), ``skopeo`` (hyperfine medians of
``skopeo copy``). ``--profile DIR`` records wave with py-spy per scenario (collapsed stacks);
``BENCH_KEEP_LOG=1`` keeps wave's log in ``build/bench-wave.log``.

Not collected by pytest (``norecursedirs``; no file here is named ``test_*``).
"""
