"""Side-by-side benchmarks of this service against Orthanc (see benchmarks/README.md)."""
