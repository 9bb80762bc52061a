"""Side-by-side benchmarks of pytest-netns against the manual ways (see __main__.py)."""
