"""Benchmarks and the data they run on: the synthetic detection suite (:mod:`.suite`) and its
labelled streams (:mod:`.synthetic`, also the demo's stream), the real-data suite (:mod:`.real`)
over the labelled series of :mod:`.realdata`, and the generative benchmark
(:mod:`.generative`). ``streamgen bench`` runs them; ``benchmarks/`` holds the scripts that
time and compare."""
