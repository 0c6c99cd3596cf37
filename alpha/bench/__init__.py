"""The CLI's benchmarks, in one place: `python -m alpha bench <what>`.

  kernels.py          the CPU kernels: SGEMM vs numpy and the FMA peak, memory-bound ops vs copy
                      bandwidth, Python overhead per call
  helios.py           helios on this machine's Vulkan device: SGEMM vs cuBLAS, memory-bound kernels
                      vs copy bandwidth; helios_coop.py, its tensor-core matmul part
  helios_profile.py   where helios spends GPU time while a CLI command runs (`bench profile`)

Side-by-side scripts that train or tokenize against other systems live in the repository's
`bench/` folder.
"""
