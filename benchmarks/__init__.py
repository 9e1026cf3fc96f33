"""Runnable measurements (installed as ``tbfast_benchmarks``): they print and save figures."""
