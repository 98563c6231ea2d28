# The tests below load the default MNIST-1D through the normal cache ($DROPLAB_CACHE or
# ~/.cache/droplab), exactly as the trainer's tests and users do, so the ~3 s generation
# happens once per machine, not once per test run. The cache itself is tested in
# test_cache.py against a temporary directory.
