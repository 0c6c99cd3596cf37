"""The CLI's benchmarks, in one place: `python -m alpha bench <what>`.

  kernels.py          the CPU kernels: SGEMM vs numpy and the FMA peak, memory-bound ops vs copy
                      bandwidth, Python overhead per call
  helios_profile.py   where helios spends GPU time while a CLI command runs

(The helios speed bench is `alpha/helios/bench.py` until it moves here.) Side-by-side scripts that
train or tokenize against other systems live in the repository's `bench/` folder.
"""
