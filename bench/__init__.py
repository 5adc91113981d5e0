"""Benchmarks: WolfPACS side by side with a direct DCMTK send, on the same data."""
