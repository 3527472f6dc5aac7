"""Benchmarks (each bench/*.py runs as a script) and the GPU acceptance run (`python -m
bench.gpu_check`). A package so that `-m bench.gpu_check` finds this folder first, whatever
else on sys.path is called `bench`."""
